"""``imagenet`` on a tiny copy: 1000 class folders, V2 by index, R/A 200-class scoring."""

from __future__ import annotations

from pathlib import Path

import torch

from lpft.data import BuildContext, create_benchmark
from paper_data import (
    GOLDFISH,
    TENCH,
    TOILET_TISSUE,
    check_output,
    imagenet_wnids,
    quick_run,
    write_class_folders,
    write_imagenet,
)

R_CLASSES = {GOLDFISH: 1, TOILET_TISSUE: 999, "n02000005": 7}


def write_variants(root: Path, wnids: list[str]) -> Path:
    write_class_folders(root / "imagenetv2-matched-frequency-format-val",
                        {str(i): i for i in range(1000)}, 1, 10_000)  # fmt: skip
    write_class_folders(root / "imagenet-r", {w: R_CLASSES[w] for w in R_CLASSES}, 2, 20_000)
    write_class_folders(root / "imagenet-a", {TENCH: 0, GOLDFISH: 1}, 2, 30_000)
    write_class_folders(root / "imagenet-sketch", {w: i for i, w in enumerate(wnids[::50])}, 1,
                        40_000)  # fmt: skip
    return root


def test_imagenet_class_indices_and_restricted_scoring(tmp_path: Path, capsys) -> None:
    wnids = imagenet_wnids()
    root = write_variants(write_imagenet(tmp_path / "data", wnids), wnids)
    benchmark = create_benchmark("imagenet", {}, BuildContext(root, tmp_path / "cache", False))
    assert benchmark.classes[:2] == [TENCH, GOLDFISH] and benchmark.classes[999] == TOILET_TISSUE
    r = benchmark.ood["r"]
    assert r.class_subset == (1, 7, 999)
    assert sorted(set(r.dataset.labels)) == [1, 7, 999]
    assert benchmark.ood["a"].class_subset == (0, 1)
    assert benchmark.ood["v2"].class_subset is None and benchmark.ood["sketch"].class_subset is None
    assert sorted(set(benchmark.ood["v2"].dataset.labels)) == list(range(1000))
    # Restricted argmax: a larger logit outside R's classes does not count against it.
    logits = torch.zeros(2, 1000)
    logits[:, 500] = 9.0
    logits[0, 7], logits[1, 999] = 1.0, 1.0
    assert r.score(logits, torch.tensor([7, 1]))["accuracy"] == 0.5
    assert benchmark.ood["v2"].score(logits, torch.tensor([7, 1]))["accuracy"] == 0.0

    code, out = check_output("imagenet", root, capsys)
    assert code == 0, out
    assert "1000 images, 1000 classes" in out and "6 images, 3 classes" in out
    results = quick_run(
        "imagenet", root, tmp_path / "run", "--set", "benchmark_options.ood=[r,a]",
        "--set", "methods.lpft.batch_size=64",
    )  # fmt: skip
    assert results["benchmark"]["ood"]["r"]["class_subset"] == [1, 7, 999]
    assert set(results["methods"]["lpft"]["summary"]["ood"]) == {"r", "a"}


def test_wrong_number_of_classes_is_malformed(tmp_path: Path, capsys) -> None:
    wnids = imagenet_wnids()[:5]
    root = write_variants(write_imagenet(tmp_path / "data", wnids), wnids)
    code, out = check_output("imagenet", root, capsys)
    assert code == 2
    assert "malformed" in out and "5 class folders, expected 1000" in out
