"""Pieces shared by the paper's on-disk benchmarks: array datasets, held-out ID validation,
and the paper's training defaults (PAPER.md, "Protocol")."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from lpft.data.folder import ImageFileDataset
from lpft.errors import DataError

# The paper's grids: fine-tuning, and LP-FT's smaller rates (its head starts at the LP solution).
PAPER_FT_LRS = [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
PAPER_LPFT_LRS = [1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7]
PAPER_BATCH_SIZE = 64

# ID validation examples are held out of the training set with this seed, whatever the run's.
HOLDOUT_SEED = 0


def paper_defaults(epochs: int) -> dict[str, Any]:
    """The defaults layer of a paper benchmark: its epoch count, the paper's grids, batch 64."""
    return {
        "methods": {
            "lp": {},
            "ft": {"epochs": epochs, "lrs": PAPER_FT_LRS, "batch_size": PAPER_BATCH_SIZE},
            "lpft": {"epochs": epochs, "lrs": PAPER_LPFT_LRS, "batch_size": PAPER_BATCH_SIZE},
        }
    }


class ArrayImageDataset(Dataset):
    """RGB images held as one uint8 array (N, H, W, 3), served as PIL images."""

    def __init__(self, images: np.ndarray, labels: Sequence[int]) -> None:
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), int(self.labels[index])


def stratified_holdout(
    labels: Sequence[int], fraction: float, seed: int = HOLDOUT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``fraction`` of each class (at least one example of
    every class with two or more) drawn at random with ``seed``; both sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(max(1, round(fraction * len(members))), len(members) - 1)
        held += members[:count].tolist()
    val = np.array(sorted(held), dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def holdout_info(data_root: Path, fraction: float, train: Dataset, val: Dataset) -> dict[str, Any]:
    """For ``Benchmark.info``: where the data came from and how ID validation was held out."""
    return {
        "data_root": str(data_root),
        "val_split": {
            "from": "train",
            "fraction": fraction,
            "seed": HOLDOUT_SEED,
            "stratified": True,
            "train": len(train),
            "val": len(val),
        },
    }


def split_files(
    samples: list[tuple[str, int]], fraction: float
) -> tuple[ImageFileDataset, ImageFileDataset]:
    """A training list of files split into (train, held-out ID validation) datasets."""
    train, val = stratified_holdout([label for _, label in samples], fraction)
    return (
        ImageFileDataset([samples[i] for i in train]),
        ImageFileDataset([samples[i] for i in val]),
    )


def split_arrays(
    images: np.ndarray, labels: np.ndarray, fraction: float
) -> tuple[ArrayImageDataset, ArrayImageDataset]:
    train, val = stratified_holdout(labels, fraction)
    return (
        ArrayImageDataset(images[train], labels[train]),
        ArrayImageDataset(images[val], labels[val]),
    )
