"""A split's data fingerprint: files by path, size and modification time; in-memory data by its
bytes; None where a dataset cannot say what it holds."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

from data_fixtures import make_folder_dataset, write_image
from lpft.data import BuildContext, create_benchmark, dataset_fingerprint
from lpft.data.folder import ImageFileDataset
from lpft.data.ondisk import ArrayImageDataset


def folder_benchmark(root: Path):
    return create_benchmark("folder", {}, BuildContext(root, root / ".cache", False))


def test_files_are_known_by_path_size_and_mtime_not_by_location(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    train = folder_benchmark(root).id_train
    first = dataset_fingerprint(train)
    assert first is not None and dataset_fingerprint(train) == first

    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(root, moved, copy_function=shutil.copy2)  # copy2 keeps mtimes
    assert dataset_fingerprint(folder_benchmark(moved).id_train) == first

    target = root / "train" / "dog" / "1.png"
    before = target.stat().st_mtime_ns
    time.sleep(0.05)  # past the file system's timestamp tick (coarse clocks: up to 10 ms)
    write_image(target, 250, seed=999)
    assert target.stat().st_mtime_ns != before
    assert dataset_fingerprint(train) != first
    # The other splits' files did not change.
    assert dataset_fingerprint(folder_benchmark(root).id_test) == dataset_fingerprint(
        folder_benchmark(moved).id_test
    )


def test_labels_order_and_missing_files_count(tmp_path: Path) -> None:
    paths = [str(p) for p in sorted(make_folder_dataset(tmp_path).rglob("*.png"))[:4]]
    samples = [(path, i % 2) for i, path in enumerate(paths)]
    base = dataset_fingerprint(ImageFileDataset(samples))
    relabelled = [(path, 1 - label) for path, label in samples]
    assert dataset_fingerprint(ImageFileDataset(relabelled)) != base
    assert dataset_fingerprint(ImageFileDataset(samples[::-1])) != base
    Path(paths[2]).unlink()
    assert dataset_fingerprint(ImageFileDataset(samples)) != base


def test_in_memory_data_is_known_by_its_bytes() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(6) % 3
    base = dataset_fingerprint(ArrayImageDataset(images, labels))
    assert base == dataset_fingerprint(ArrayImageDataset(images.copy(), labels.copy()))
    edited = images.copy()
    edited[2, 1, 1, 0] ^= 1
    assert dataset_fingerprint(ArrayImageDataset(edited, labels)) != base
    assert dataset_fingerprint(ArrayImageDataset(images, labels[::-1].copy())) != base

    tensors = TensorDataset(torch.zeros(3, 2), torch.arange(3))
    other = TensorDataset(torch.ones(3, 2), torch.arange(3))
    assert dataset_fingerprint(tensors) != dataset_fingerprint(other)
    whole = ArrayImageDataset(images, labels)
    assert dataset_fingerprint(Subset(whole, [0, 1])) != dataset_fingerprint(Subset(whole, [0, 2]))
    both = ConcatDataset([whole, whole])
    assert dataset_fingerprint(both) not in (None, base)


class Indexed(Dataset):
    """Reads its inputs from somewhere it does not name: only 1-D index and label arrays."""

    def __init__(self) -> None:
        self.indices = np.arange(5)
        self.labels = np.zeros(5, dtype=np.int64)

    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int):
        raise NotImplementedError


class SaysItself(Indexed):
    def fingerprint(self) -> str:
        return "v7"


def test_what_cannot_be_known_is_none_and_the_hook_wins() -> None:
    assert dataset_fingerprint(Indexed()) is None
    assert dataset_fingerprint(Subset(Indexed(), [0])) is None
    assert dataset_fingerprint(SaysItself()) == "v7"


SMALL = {"train_per_class": 3, "val_per_class": 2, "test_per_class": 2, "heldout_per_class": 2}


def test_digits_shift_splits_differ_and_are_stable(tmp_path: Path) -> None:
    context = BuildContext(None, tmp_path, False)
    benchmark = create_benchmark("digits-shift", SMALL, context)
    again = create_benchmark("digits-shift", SMALL, context)
    prints = {name: dataset_fingerprint(split.dataset) for name, split in benchmark.ood.items()}
    prints["id_train"] = dataset_fingerprint(benchmark.id_train)
    assert None not in prints.values() and len(set(prints.values())) == len(prints)
    assert dataset_fingerprint(again.id_train) == prints["id_train"]
    other_seed = create_benchmark("digits-shift", {**SMALL, "seed": 1}, context)
    assert dataset_fingerprint(other_seed.id_train) != prints["id_train"]
