"""``folder``: a custom benchmark from a directory of class folders.

Layout under ``--data-root``::

    train/<class>/*.png   val/<class>/*.png   test/<class>/*.png   ood/<name>/<class>/*.png

Classes come from ``train/``; ``val`` and ``test`` must have the same class folders and every OOD
set a subset of them. Every image is opened once up front so that a bad file stops the run before
training (or, with ``--skip-bad-images``, is left out and counted).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict
from torch.utils.data import Dataset

from lpft.data.benchmark import Benchmark, BuildContext, EvalSplit, register_benchmark
from lpft.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
ID_SPLITS = ("train", "val", "test")


class ImageFileDataset(Dataset):
    """(path, label) pairs read lazily with PIL."""

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            image.load()
            return image.copy(), label


class FolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    augment: Literal["none", "rrc_flip", "resize_crop_flip"] = "none"
    restrict_ood_argmax: bool = False
    verify_images: bool = True


def class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(class_dir: Path) -> list[Path]:
    return sorted(
        p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def image_problem(path: Path) -> str | None:
    """None if PIL decodes the whole file, else the reason it cannot."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # PIL raises many types for corrupt data
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def scan_split(
    split_dir: Path, class_to_index: dict[str, int], allowed_missing: bool
) -> list[tuple[str, int]]:
    if not split_dir.is_dir():
        raise DataError(f"missing split directory {split_dir}")
    found = class_folders(split_dir)
    unknown = [c for c in found if c not in class_to_index]
    if unknown:
        raise DataError(
            f"{split_dir}: class folders {unknown[:5]} are not among the train classes "
            f"({', '.join(list(class_to_index)[:10])}{', ...' if len(class_to_index) > 10 else ''})"
        )
    missing = [c for c in class_to_index if c not in found]
    if missing and not allowed_missing:
        raise DataError(f"{split_dir}: missing class folders {missing[:5]} that train/ has")
    samples = []
    for name in found:
        files = list_images(split_dir / name)
        if not files:
            raise DataError(f"{split_dir / name}: empty class folder (no images)")
        samples += [(str(p), class_to_index[name]) for p in files]
    return samples


def drop_bad_images(
    samples: list[tuple[str, int]], skip_bad: bool, bad: list[str]
) -> list[tuple[str, int]]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = list(pool.map(lambda s: image_problem(Path(s[0])), samples))
    kept = []
    for sample, problem in zip(samples, problems, strict=True):
        if problem is None:
            kept.append(sample)
        elif skip_bad:
            bad.append(sample[0])
        else:
            raise DataError(
                f"{sample[0]}: unreadable image ({problem}); "
                "fix or remove it, or pass --skip-bad-images to skip and count such files"
            )
    return kept


@register_benchmark("folder", options_model=FolderOptions)
def build_folder_benchmark(context: BuildContext, options: FolderOptions) -> Benchmark:
    root = context.data_root
    if root is None:
        raise DataError("benchmark 'folder' needs --data-root DIR (with train/ val/ test/ ood/)")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"missing split directory {train_dir}")
    classes = class_folders(train_dir)
    if not classes:
        raise DataError(f"{train_dir}: no class folders")
    class_to_index = {name: i for i, name in enumerate(classes)}

    bad: list[str] = []

    def load(split_dir: Path, allowed_missing: bool) -> list[tuple[str, int]]:
        samples = scan_split(split_dir, class_to_index, allowed_missing)
        if options.verify_images:
            samples = drop_bad_images(samples, context.skip_bad_images, bad)
        if not samples:
            raise DataError(f"{split_dir}: no readable images left")
        return samples

    splits = {name: ImageFileDataset(load(root / name, False)) for name in ID_SPLITS}
    ood_root = root / "ood"
    if not ood_root.is_dir() or not class_folders(ood_root):
        raise DataError(f"missing OOD sets: expected {ood_root}/<name>/<class>/ folders")
    ood = {}
    for name in class_folders(ood_root):
        samples = load(ood_root / name, True)
        present = tuple(sorted({label for _, label in samples}))
        subset = present if options.restrict_ood_argmax else None
        ood[name] = EvalSplit(ImageFileDataset(samples), subset)
    return Benchmark(
        name="folder",
        classes=classes,
        id_train=splits["train"],
        id_val=splits["val"],
        id_test=splits["test"],
        ood=ood,
        augment=options.augment,
        bad_images=bad,
    )
