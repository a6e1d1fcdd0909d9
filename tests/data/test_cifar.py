"""``cifar10-stl10`` and ``cifar10-cifar10.1`` on tiny copies in the real file formats."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lpft.data import BuildContext, create_benchmark
from lpft.data.cifar import STL_SHARED_CLASSES
from paper_data import check_output, quick_run, write_cifar10, write_cifar101, write_stl10_test

# STL-10 classes: airplane bird car cat deer dog horse monkey ship truck.
STL_LABELS = [0, 1, 2, 7, 6, 7, 8, 9, 3, 4, 5]
CIFAR_OF_KEPT = [0, 2, 1, 7, 8, 9, 3, 4, 5]  # STL_LABELS without the monkeys (7), as CIFAR ids


def build(name: str, root: Path):
    return create_benchmark(name, {}, BuildContext(root, root / ".cache", False))


def test_stl10_drops_monkey_and_maps_labels_to_cifar(tmp_path: Path) -> None:
    root = write_stl10_test(write_cifar10(tmp_path / "data"), STL_LABELS)
    benchmark = build("cifar10-stl10", root)
    stl = benchmark.ood["stl10"]
    assert list(stl.dataset.labels) == CIFAR_OF_KEPT
    assert stl.class_subset == STL_SHARED_CLASSES == (0, 1, 2, 3, 4, 5, 7, 8, 9)
    image, label = stl.dataset[1]
    assert image.size == (96, 96) and label == 2
    assert benchmark.num_classes == 10
    assert len(benchmark.id_train) + len(benchmark.id_val) == 100 and len(benchmark.id_val) == 10
    assert np.bincount(benchmark.id_val.labels).tolist() == [1] * 10


def test_stl10_pixels_are_read_in_row_major_order(tmp_path: Path) -> None:
    root = write_stl10_test(write_cifar10(tmp_path / "data"), [0])
    raw = np.zeros((1, 96, 96, 3), dtype=np.uint8)
    raw[0, 10, 70] = (255, 0, 0)  # row 10, column 70
    raw.transpose(0, 3, 2, 1).tofile(root / "stl10_binary" / "test_X.bin")
    image, _ = build("cifar10-stl10", root).ood["stl10"].dataset[0]
    assert np.asarray(image)[10, 70].tolist() == [255, 0, 0]


def test_data_check_then_quick_lp_and_lpft_run(tmp_path: Path, capsys) -> None:
    root = write_cifar101(write_stl10_test(write_cifar10(tmp_path / "data"), STL_LABELS))
    code, out = check_output("cifar10-stl10", root, capsys)
    assert code == 0, out
    assert "id_train" in out and "90 images, 10 classes" in out
    assert "ood:stl10" in out and "9 images, 9 classes" in out
    results = quick_run("cifar10-stl10", root, tmp_path / "run")
    assert results["benchmark"]["ood"]["stl10"]["class_subset"] == list(STL_SHARED_CLASSES)
    held_out = results["benchmark"]["info"]["val_split"]
    assert held_out["from"] == "train" and (held_out["train"], held_out["val"]) == (90, 10)
    selected = results["methods"]["lpft"]["seeds"][0]["selected"]
    assert 0.0 <= selected["ood"]["stl10"] <= 1.0
    assert selected["scores"]["stl10"]["accuracy"] == selected["ood"]["stl10"]
    code, out = check_output("cifar10-cifar10.1", root, capsys)
    assert code == 0 and "ood:cifar10.1" in out and "20 images, 10 classes" in out
    results = quick_run("cifar10-cifar10.1", root, tmp_path / "run101")
    assert results["benchmark"]["ood"]["cifar10.1"]["size"] == 20


def test_missing_stl10_names_the_files_and_how_to_get_them(tmp_path: Path, capsys) -> None:
    root = write_cifar10(tmp_path / "data")
    code, out = check_output("cifar10-stl10", root, capsys)
    assert code == 2
    assert f"expected file {root / 'stl10_binary' / 'test_X.bin'}" in out
    assert "stl10_binary.tar.gz" in out
    assert re.search(r"^\s+id_train\s+found$", out, re.MULTILINE)
    assert re.search(r"^\s+ood:stl10\s+missing$", out, re.MULTILINE)
