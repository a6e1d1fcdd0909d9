"""``cifar10-stl10`` and ``cifar10-cifar10.1``: CIFAR-10 to STL-10 and to CIFAR-10.1.

Layout under ``--data-root`` (what the official archives extract to)::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    stl10_binary/test_X.bin, test_y.bin
    cifar10.1/cifar10.1_v6_data.npy, cifar10.1_v6_labels.npy

ID: CIFAR-10 train (10% of each class held out as ID validation) and test. OOD ``stl10``: the
STL-10 test set without 'monkey', its labels mapped to CIFAR-10's; the head stays 10-way and the
argmax is restricted to the 9 shared classes ('frog' has no STL-10 counterpart). OOD
``cifar10.1``: CIFAR-10.1 v6. Paper protocol: images resized to the model's input size, no
augmentation; 20 epochs.

The files are read directly (pickle batches, STL-10 binaries, ``.npy``): torchvision's readers
insist on the archives' checksums and STL-10's 2.6 GB unlabeled file even for the test split.
``benchmark_options.download: true`` fetches CIFAR-10 / STL-10 through torchvision (which checks
those checksums while downloading).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from torchvision.datasets import CIFAR10, STL10

from lpft.data.benchmark import (
    ID_SPLITS,
    Benchmark,
    BuildContext,
    EvalSplit,
    Requirement,
    register_benchmark,
)
from lpft.data.ondisk import ArrayImageDataset, holdout_info, paper_defaults, split_arrays
from lpft.errors import DataError

CIFAR_DIR = "cifar-10-batches-py"
STL_DIR = "stl10_binary"
CIFAR101_DIR = "cifar10.1"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
STL_TEST_FILES = ("test_X.bin", "test_y.bin")
CIFAR101_FILES = ("cifar10.1_v6_data.npy", "cifar10.1_v6_labels.npy")
STL_SIZE = 96

CIFAR_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
# STL-10 class order: airplane, bird, car, cat, deer, dog, horse, monkey, ship, truck.
STL_TO_CIFAR = (0, 2, 1, 3, 4, 5, 7, None, 8, 9)
STL_SHARED_CLASSES = tuple(sorted(c for c in STL_TO_CIFAR if c is not None))

GET_CIFAR = (
    "extract https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into the data root "
    "(or set benchmark_options.download: true)"
)
GET_STL = (
    "extract http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz into the data root "
    "(or set benchmark_options.download: true)"
)
GET_CIFAR101 = (
    "download cifar10.1_v6_data.npy and cifar10.1_v6_labels.npy from "
    "https://github.com/modestyachts/CIFAR-10.1 (folder datasets/)"
)


class CifarOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    augment: Literal["none", "rrc_flip", "resize_crop_flip"] = "none"
    id_val_fraction: float = Field(0.1, gt=0, lt=1)
    download: bool = False


def _file_requirements(
    directory: Path, files: tuple[str, ...], splits: tuple[str, ...], how: str
) -> list[Requirement]:
    return [Requirement(directory / name, splits, how, "file") for name in files]


def cifar_layout(root: Path, options: CifarOptions) -> list[Requirement]:
    if options.download:
        return []
    directory = root / CIFAR_DIR
    return [
        *_file_requirements(directory, CIFAR_TRAIN_BATCHES, ("id_train", "id_val"), GET_CIFAR),
        *_file_requirements(directory, ("test_batch",), ("id_test",), GET_CIFAR),
        *_file_requirements(directory, ("batches.meta",), ID_SPLITS, GET_CIFAR),
    ]


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({exc})") from None


def read_cifar_batches(directory: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 python batches -> (N, 32, 32, 3) uint8 images and int64 labels."""
    images, labels = [], []
    for name in names:
        batch = _unpickle(directory / name)
        if "data" not in batch or "labels" not in batch:
            raise DataError(f"{directory / name}: expected keys 'data' and 'labels'")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{directory / name}: data has shape {data.shape}, expected (N, 3072)")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def check_cifar_classes(directory: Path) -> None:
    names = _unpickle(directory / "batches.meta").get("label_names")
    if list(names or []) != CIFAR_CLASSES:
        raise DataError(f"{directory / 'batches.meta'}: label_names {names} are not CIFAR-10's")


def _download_torchvision(root: Path, options: CifarOptions, stl: bool) -> None:
    if not options.download:
        return
    CIFAR10(str(root), train=True, download=True)
    if stl:
        STL10(str(root), split="test", download=True)


def cifar10_splits(root: Path, options: CifarOptions) -> dict[str, ArrayImageDataset]:
    directory = root / CIFAR_DIR
    check_cifar_classes(directory)
    train_images, train_labels = read_cifar_batches(directory, CIFAR_TRAIN_BATCHES)
    test_images, test_labels = read_cifar_batches(directory, ("test_batch",))
    train, val = split_arrays(train_images, train_labels, options.id_val_fraction)
    return {"train": train, "val": val, "test": ArrayImageDataset(test_images, test_labels)}


def read_stl10_test(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """STL-10 binaries -> (N, 96, 96, 3) uint8 images and 0-based STL-10 labels."""
    raw = np.fromfile(directory / "test_X.bin", dtype=np.uint8)
    pixels = 3 * STL_SIZE * STL_SIZE
    if raw.size == 0 or raw.size % pixels:
        raise DataError(
            f"{directory / 'test_X.bin'}: {raw.size} bytes is not a multiple of {pixels}"
        )
    # Stored channel by channel, each image column-major.
    images = raw.reshape(-1, 3, STL_SIZE, STL_SIZE).transpose(0, 3, 2, 1)
    labels = np.fromfile(directory / "test_y.bin", dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != len(images) or labels.min() < 0 or labels.max() >= len(STL_TO_CIFAR):
        raise DataError(
            f"{directory / 'test_y.bin'}: expected {len(images)} labels in 1..10, "
            f"got {len(labels)} in {labels.min() + 1}..{labels.max() + 1}"
        )
    return np.ascontiguousarray(images), labels


def stl10_as_cifar(directory: Path) -> EvalSplit:
    images, stl_labels = read_stl10_test(directory)
    mapping = np.array([-1 if c is None else c for c in STL_TO_CIFAR])
    labels = mapping[stl_labels]
    keep = labels >= 0
    return EvalSplit(ArrayImageDataset(images[keep], labels[keep]), STL_SHARED_CLASSES)


def read_cifar101(directory: Path) -> EvalSplit:
    data_path, labels_path = (directory / name for name in CIFAR101_FILES)
    try:
        images = np.load(data_path, allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False).astype(np.int64)
    except (OSError, ValueError) as exc:
        raise DataError(f"{directory}: cannot read the CIFAR-10.1 .npy files ({exc})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{data_path}: expected uint8 (N, 32, 32, 3), got {images.shape}")
    if labels.min() < 0 or labels.max() >= len(CIFAR_CLASSES):
        raise DataError(f"{labels_path}: labels must be CIFAR-10 class indices 0..9")
    return EvalSplit(ArrayImageDataset(images, labels))


def _cifar_benchmark(name: str, root: Path, options: CifarOptions, ood: dict) -> Benchmark:
    splits = cifar10_splits(root, options)
    return Benchmark(
        name=name,
        classes=list(CIFAR_CLASSES),
        id_train=splits["train"],
        id_val=splits["val"],
        id_test=splits["test"],
        ood=ood,
        augment=options.augment,
        info=holdout_info(root, options.id_val_fraction, splits["train"], splits["val"]),
    )


def stl10_layout(root: Path, options: CifarOptions) -> list[Requirement]:
    own = (
        []
        if options.download
        else _file_requirements(root / STL_DIR, STL_TEST_FILES, ("ood:stl10",), GET_STL)
    )
    return cifar_layout(root, options) + own


def cifar101_layout(root: Path, options: CifarOptions) -> list[Requirement]:
    own = _file_requirements(root / CIFAR101_DIR, CIFAR101_FILES, ("ood:cifar10.1",), GET_CIFAR101)
    return cifar_layout(root, options) + own


@register_benchmark(
    "cifar10-stl10", options_model=CifarOptions, defaults=paper_defaults(20), layout=stl10_layout
)
def build_cifar10_stl10(context: BuildContext, options: CifarOptions) -> Benchmark:
    root = Path(context.data_root).expanduser()
    _download_torchvision(root, options, stl=True)
    ood = {"stl10": stl10_as_cifar(root / STL_DIR)}
    return _cifar_benchmark("cifar10-stl10", root, options, ood)


@register_benchmark(
    "cifar10-cifar10.1",
    options_model=CifarOptions,
    defaults=paper_defaults(20),
    layout=cifar101_layout,
)
def build_cifar10_cifar101(context: BuildContext, options: CifarOptions) -> Benchmark:
    root = Path(context.data_root).expanduser()
    _download_torchvision(root, options, stl=False)
    ood = {"cifar10.1": read_cifar101(root / CIFAR101_DIR)}
    return _cifar_benchmark("cifar10-cifar10.1", root, options, ood)
