"""The ``folder`` benchmark: layout checks, bad images, and a real run on generated PNGs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_fixtures import CLASSES, make_folder_dataset, write_image
from lpft.cli.main import main
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
    (root / "test").rename(root / "testing")
    with pytest.raises(DataError, match=r"missing split directory .*/test$"):
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


def test_every_format_pillow_opens_is_read_and_other_files_are_counted(
    tmp_path: Path, capsys
) -> None:
    root = make_folder_dataset(tmp_path / "data")
    cat = root / "train" / "cat"
    pixels = np.full((12, 12), 90, dtype=np.uint8)
    for name in ("a.jfif", "b.pgm", "c.tga"):
        Image.fromarray(pixels).save(cat / name)
    (cat / "labels.txt").write_text("cat")
    (cat / "features.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (cat / ".DS_Store").write_bytes(b"\0")
    benchmark = build(root)
    read = {Path(path).name for path, _ in benchmark.id_train.samples}
    assert {"a.jfif", "b.pgm", "c.tga"} <= read and len(benchmark.id_train) == 15
    skipped = benchmark.info["skipped_files"]
    assert (skipped["count"], skipped["by_extension"]) == (2, {".h5": 1, ".txt": 1})
    assert main(["data", "check", "folder", "--data-root", str(root)]) == 0
    note = "note: 2 files skipped, not in a format Pillow opens (by extension): .h5 x1, .txt x1"
    assert note in capsys.readouterr().out


def labels_of(dataset) -> list[int]:
    return [label for _, label in dataset.samples]


def test_without_val_a_seeded_stratified_split_of_train_is_recorded(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data", per_class=10)
    shutil.rmtree(root / "val")
    benchmark = build(root, val_fraction=0.3, split_seed=4)
    assert [labels_of(benchmark.id_val).count(c) for c in range(3)] == [3, 3, 3]
    assert [labels_of(benchmark.id_train).count(c) for c in range(3)] == [7, 7, 7]
    train_files = {path for path, _ in benchmark.id_train.samples}
    val_files = {path for path, _ in benchmark.id_val.samples}
    assert not train_files & val_files and len(train_files | val_files) == 30
    assert benchmark.info["val_split"] == {
        "from": "train",
        "fraction": 0.3,
        "seed": 4,
        "stratified": True,
        "train": 21,
        "val": 9,
    }
    again = build(root, val_fraction=0.3, split_seed=4)
    assert [p for p, _ in again.id_val.samples] == [p for p, _ in benchmark.id_val.samples]
    other = build(root, val_fraction=0.3, split_seed=5)
    assert {p for p, _ in other.id_val.samples} != val_files


def test_with_val_folder_no_split_is_made(tmp_path: Path) -> None:
    benchmark = build(make_folder_dataset(tmp_path / "data"))
    assert "val_split" not in benchmark.info and len(benchmark.id_val) == 12


def test_class_with_one_train_image_cannot_be_split(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    shutil.rmtree(root / "val")
    for file in sorted((root / "train" / "dog").glob("*.png"))[1:]:
        file.unlink()
    with pytest.raises(DataError, match=r"train/dog has 1 image: too few"):
        build(root)


def test_argmax_restriction_is_chosen_per_ood_set(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data", ood_classes=("cat", "owl"))
    shutil.copytree(root / "ood" / "sketch", root / "ood" / "photo")
    benchmark = build(root, restrict_ood_argmax=["sketch"])
    assert benchmark.ood["sketch"].class_subset == (0, 2)
    assert benchmark.ood["photo"].class_subset is None
    with pytest.raises(DataError, match=r"no OOD set 'paint' in .*found: photo, sketch"):
        build(root, restrict_ood_argmax=["paint"])


def test_benchmark_is_named_after_its_data_root_or_option(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "birds-2024")
    assert build(root).name == "birds-2024"
    assert build(root, name="Birds").name == "Birds"


def write_pixels(path: Path, pixels: np.ndarray, **save) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save)


def test_mixed_formats_sizes_and_modes_decode_to_rgb_or_gray(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    rng = np.random.default_rng(0)
    write_pixels(root / "train" / "cat" / "gray.jpg", rng.integers(0, 255, (30, 17), np.uint8))
    write_pixels(root / "train" / "cat" / "alpha.png", rng.integers(0, 255, (9, 40, 4), np.uint8))
    write_pixels(root / "train" / "cat" / "wide.webp", rng.integers(0, 255, (20, 50, 3), np.uint8))
    benchmark = build(root)
    images = {
        Path(p).name: benchmark.id_train[i][0]
        for i, (p, _) in enumerate(benchmark.id_train.samples)
    }
    assert (images["gray.jpg"].mode, images["gray.jpg"].size) == ("L", (17, 30))
    assert (images["alpha.png"].mode, images["alpha.png"].size) == ("RGB", (40, 9))
    assert (images["wide.webp"].mode, images["wide.webp"].size) == ("RGB", (50, 20))


def test_images_are_decoded_once_and_served_from_memory(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    cached = build(root)
    uncached = build(root, decode_cache_mb=0)
    expected = np.asarray(cached.id_test[3][0])
    assert cached.info["decoded_in_memory"] == 12 * 3 + 12
    assert uncached.info["decoded_in_memory"] == 0
    shutil.rmtree(root / "test")
    assert np.array_equal(np.asarray(cached.id_test[3][0]), expected)
    with pytest.raises(FileNotFoundError):
        uncached.id_test[3]
