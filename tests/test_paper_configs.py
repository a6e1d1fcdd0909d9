"""Every configs/paper/*.yaml loads and validates; without data, the check names what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from lpft.cli.main import main
from lpft.config import load_yaml_config, resolve_config
from lpft.data.benchmark import benchmark_defaults

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "paper").glob("*.yaml"))
PAPER_BENCHMARKS = {
    "living17", "entity30", "cifar10-stl10", "cifar10-cifar10.1", "domainnet", "fmow", "imagenet",
}  # fmt: skip


def test_one_config_per_paper_benchmark() -> None:
    assert {path.stem for path in CONFIGS} == PAPER_BENCHMARKS
    assert {load_yaml_config(path)["benchmark"] for path in CONFIGS} == PAPER_BENCHMARKS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates_and_matches_the_paper(path: Path) -> None:
    config = resolve_config(yaml_path=path)  # model specs validate without their weights
    assert config.model.partition(":")[0] in {"file", "openclip"}
    paper = benchmark_defaults(config.benchmark)["methods"]
    for method in ("ft", "lpft"):
        options = config.methods[method]
        assert options.epochs == paper[method]["epochs"]
        assert options.lrs == paper[method]["lrs"] and options.batch_size == 64
    assert config.seeds == 3
    augment = config.benchmark_options.get("augment")
    random_augmentation = augment in {"rrc_flip", "resize_crop_flip"}
    expected = "augmented" if random_augmentation else "eval"
    assert config.methods["lp"].train_features == expected  # the official LP recipe


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_check_without_data_reports_what_is_missing(path: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "check", "--config", str(path), "--data-root", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"expected dir {tmp_path}" in out or f"expected file {tmp_path}" in out
    assert "missing" in out and "get it:" in out
