"""The ``folder`` benchmark: layout checks, bad images, and a real run on generated PNGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_fixtures import CLASSES, make_folder_dataset, write_image
from lpft.data import BuildContext, create_benchmark
from lpft.errors import DataError


def build(root: Path, skip_bad: bool = False, **options):
    return create_benchmark("folder", options, BuildContext(root, root / ".cache", skip_bad))


def test_reads_splits_classes_and_ood_sets(tmp_path: Path) -> None:
    benchmark = build(make_folder_dataset(tmp_path / "data"))
    assert benchmark.classes == list(CLASSES)
    assert len(benchmark.id_train) == 12 and set(benchmark.ood) == {"sketch"}
    image, label = benchmark.ood["sketch"].dataset[5]
    assert image.size == (12, 12) and label == 1


def test_ood_subset_of_classes_can_restrict_the_argmax(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data", ood_classes=("cat", "owl"))
    assert build(root).ood["sketch"].class_subset is None
    assert build(root, restrict_ood_argmax=True).ood["sketch"].class_subset == (0, 2)


def test_missing_split_is_named(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    (root / "val").rename(root / "validation")
    with pytest.raises(DataError, match=r"missing split directory .*/val$"):
        build(root)


def test_ood_class_not_in_train_is_a_mismatch(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    write_image(root / "ood" / "sketch" / "bat" / "0.png", 10, 99)
    with pytest.raises(DataError, match=r"sketch: class folders \['bat'\] are not among"):
        build(root)


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    (root / "test" / "owl" / "extra").mkdir()
    for file in (root / "test" / "owl").glob("*.png"):
        file.unlink()
    with pytest.raises(DataError, match=r"test/owl: empty class folder"):
        build(root)


def test_ood_set_named_like_an_id_split_is_refused(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    (root / "ood" / "sketch").rename(root / "ood" / "id_test")
    with pytest.raises(DataError, match=r"OOD sets cannot be named \['id_test'\]"):
        build(root)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_image_is_named_or_skipped_and_counted(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    bad = root / "train" / "dog" / "2.png"
    truncate(bad)
    with pytest.raises(DataError, match=rf"{bad}: unreadable image .*--skip-bad-images"):
        build(root)
    benchmark = build(root, skip_bad=True)
    assert benchmark.bad_images == [str(bad)]
    assert len(benchmark.id_train) == 11
