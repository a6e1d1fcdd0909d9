"""``lpft data check`` and the same check at the start of ``lpft run``, without any data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lpft.cli.main import main
from lpft.data import BENCHMARKS
from lpft.data.benchmark import expected_layout, validate_benchmark_options

PAPER_BENCHMARKS = [
    "living17", "entity30", "cifar10-stl10", "cifar10-cifar10.1", "domainnet", "fmow", "imagenet",
]  # fmt: skip


@pytest.mark.parametrize("name", PAPER_BENCHMARKS)
def test_empty_directory_names_every_missing_path(name: str, tmp_path: Path, capsys) -> None:
    assert main(["data", "check", name, "--data-root", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    layout = expected_layout(name, validate_benchmark_options(name, {}), tmp_path)
    assert layout
    for requirement in layout:
        assert f"expected {requirement.kind} {requirement.path}\n" in out
        assert requirement.how in out
    for split in {s for r in layout for s in r.splits}:
        assert re.search(rf"^\s+{re.escape(split)}\s+missing$", out, re.MULTILINE), split
    assert out.rstrip().endswith("data check failed")


def test_run_stops_before_training_on_missing_data(tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "run"
    argv = ["run", "--benchmark", "domainnet", "--data-root", str(tmp_path / "nothing"),
            "--model", "builtin:tiny-test", "--quiet", "--out", str(out_dir)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"first {tmp_path / 'nothing' / 'domainnet' / 'sketch'}" in err
    assert "lpft data check domainnet" in err and not out_dir.exists()


def test_benchmark_without_data_root_is_told_to_pass_one(capsys) -> None:
    assert main(["data", "check", "living17"]) == 2
    assert "--data-root" in capsys.readouterr().err


def test_generated_benchmark_reports_counts(capsys) -> None:
    assert main(["data", "check", "digits-shift"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+ood:handwritten\s+found\s+630 images, 10 classes$", out, re.MULTILINE)
    assert "ood_val:handwritten" in out


def test_every_paper_benchmark_is_registered() -> None:
    assert set(PAPER_BENCHMARKS) <= set(BENCHMARKS.names())
