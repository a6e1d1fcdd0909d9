"""On-disk datasets in the layouts the loaders read, generated into a test's tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "owl")


def write_image(path: Path, value: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(value, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_folder_dataset(root: Path, per_class: int = 4, ood_classes=CLASSES) -> Path:
    seed = 0
    for split in ("train", "val", "test"):
        for index, name in enumerate(CLASSES):
            for i in range(per_class):
                seed += 1
                write_image(root / split / name / f"{i}.png", 60 + 60 * index, seed)
    for name in ood_classes:
        for i in range(per_class):
            seed += 1
            write_image(
                root / "ood" / "sketch" / name / f"{i}.png", 90 + 50 * CLASSES.index(name), seed
            )
    return root
