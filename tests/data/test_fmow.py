"""``fmow`` on a tiny WILDS-format FMoW v1.1: regions, OOD-val twins, worst-region accuracy."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lpft.data import BuildContext, create_benchmark, dataset_fingerprint
from paper_data import check_output, quick_run, write_fmow, write_png

# WILDS warns that the tiny copy's years do not start at 2002.
pytestmark = pytest.mark.filterwarnings("ignore:Minimum metadata value:UserWarning")

LABELS = (0, 5, 61)


def fmow_rows() -> list[tuple[str, str, int]]:
    rows = []
    for part, countries in {
        "train": ("USA", "BRA", "USA", "FRA", "NGA"),  # only the Americas are ID
        "id_val": ("USA", "BRA"),
        "id_test": ("USA", "BRA"),
        "ood_val": ("NGA", "FRA"),
        "ood_test": ("NGA", "KEN", "FRA", "CHN"),
    }.items():
        rows += [(part, country, label) for country in countries for label in LABELS]
    return rows


def build(root: Path, **options):
    return create_benchmark("fmow", options, BuildContext(root, root / ".cache", False))


def test_regions_twins_and_worst_region_metric(tmp_path: Path, capsys) -> None:
    root = write_fmow(tmp_path / "data", fmow_rows())
    benchmark = build(root)
    assert benchmark.num_classes == 62 and benchmark.classes[0] == "airport"
    assert len(benchmark.id_train) == 3 * 3 and len(benchmark.id_test) == 2 * 3
    assert set(benchmark.ood) == set(benchmark.ood_val) == {"africa", "europe"}
    assert len(benchmark.ood["africa"].dataset) == 2 * 3  # NGA and KEN
    assert set(benchmark.ood["africa"].metadata["region"]) == {"Africa"}
    assert len(benchmark.ood_val["europe"].dataset) == 3
    assert sorted(set(benchmark.id_train.labels)) == list(LABELS)

    # Worst region over a set holding two regions: Africa all right, Europe one in three.
    two = build(root, ood_regions={"mixed": ["Africa", "Europe"]}).ood["mixed"]
    labels = torch.as_tensor(two.dataset.labels)
    predicted = labels.clone()
    europe = [i for i, r in enumerate(two.metadata["region"]) if r == "Europe"]
    predicted[europe[1:]] = 1
    scores = two.score(torch.nn.functional.one_hot(predicted, 62).float(), labels)
    assert scores["worst_region"] == 1 / 3 and scores["accuracy"] == 7 / 9

    code, out = check_output("fmow", root, capsys)
    assert code == 0 and "ood_val:europe" in out and "6 images, 3 classes" in out
    results = quick_run("fmow", root, tmp_path / "run")
    assert results["benchmark"]["metrics"]["africa"] == ["accuracy", "worst_region"]
    assert set(results["benchmark"]["ood_val"]) == {"africa", "europe"}
    summary = results["methods"]["lpft"]["summary"]
    assert set(summary["scores"]) == {"id_test", "africa", "europe"}
    assert summary["scores"]["africa"]["worst_region"]["mean"] <= summary["ood"]["africa"]["mean"]
    summary_md = (tmp_path / "run" / "summary.md").read_text()
    assert "OOD africa worst_region" in summary_md and "ID test worst_region" in summary_md


def test_fingerprint_follows_the_image_files_wilds_reads(tmp_path: Path) -> None:
    root = write_fmow(tmp_path / "data", fmow_rows())
    benchmark = build(root)
    train = benchmark.id_train
    first, test_print = dataset_fingerprint(train), dataset_fingerprint(benchmark.id_test)
    assert first is not None and test_print not in (None, first)
    first_image = train.dataset.full_idxs[train.indices[0]]
    image = root / "fmow_v1.1" / "images" / f"rgb_img_{first_image}.png"
    with Image.open(image) as on_disk:
        assert np.array_equal(np.asarray(train[0][0]), np.asarray(on_disk.convert("RGB")))
    before = image.stat().st_mtime_ns
    time.sleep(0.05)  # past the file system's timestamp tick (coarse clocks: up to 10 ms)
    write_png(image, int(train.labels[0]), seed=999, size=8)
    assert image.stat().st_mtime_ns != before
    assert dataset_fingerprint(train) != first
    assert dataset_fingerprint(benchmark.id_test) == test_print
