"""``folder``: a custom benchmark from a directory of class folders.

Layout under ``--data-root``::

    train/<class>/*   [val/<class>/*]   test/<class>/*   ood/<name>/<class>/*

Classes come from ``train/``; ``val`` and ``test`` must have the same class folders and every OOD
set a subset of them. Without ``val/``, a seeded split stratified by class is taken from
``train/`` (``val_fraction``, ``split_seed``) and recorded in ``results.json``. Images are any
format and size Pillow reads (by the extensions its plugins register), RGB or grayscale; any
other file is skipped, counted by extension in ``info.skipped_files`` and named by ``lpft data
check`` and the run (hidden files are ignored). Every image is decoded once up front: a bad file
stops the run before training (or, with ``--skip-bad-images``, is left out and counted), and the
decoded pixels are kept in memory up to ``decode_cache_mb`` so that epochs do not decode again.
The benchmark is named after the data root's folder (or ``name``) in tables and reports.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import Dataset

from lpft.data.benchmark import Benchmark, BuildContext, EvalSplit, register_benchmark
from lpft.errors import DataError


def image_extensions() -> tuple[str, ...]:
    """Extensions of every format Pillow can open (``.jfif``, ``.pgm``, ``.tga``, ...), less
    its stubs (HDF5, GRIB, BUFR, WMF), which identify a file but read no pixels."""
    Image.init()
    return tuple(
        sorted(
            ext
            for ext, image_format in Image.registered_extensions().items()
            if image_format in Image.OPEN and not is_stub(Image.OPEN[image_format][0])
        )
    )


def is_stub(factory: object) -> bool:
    return isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)


IMAGE_EXTENSIONS = image_extensions()
# Why a file that is not read was skipped (``info.skipped_files``).
SKIPPED_WHY = "not in a format Pillow opens (by extension)"
SKIPPED_EXAMPLES = 5
ID_SPLITS = ("train", "val", "test")
Sample = tuple[str, int]


class FolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    augment: Literal["none", "rrc_flip", "resize_crop_flip"] = "none"
    # True/False for every OOD set, or the names of the OOD sets whose argmax is restricted to
    # the classes they contain (as for ImageNet-R); the others keep the full argmax.
    restrict_ood_argmax: bool | list[str] = False
    verify_images: bool = True
    # Without val/: this fraction of each train class becomes ID validation.
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = 0
    # Decoded images kept in memory (MB); beyond it, images are decoded from disk when read.
    decode_cache_mb: int = Field(4096, ge=0)
    # Name in tables and reports; default: the data root's folder name.
    name: str | None = Field(None, min_length=1)


class DecodeCache:
    """Decoded pixels (uint8, ``L`` or ``RGB``) of as many images as fit in the budget."""

    def __init__(self, budget_bytes: int) -> None:
        self.remaining = budget_bytes
        self.arrays: dict[str, np.ndarray] = {}

    def offer(self, path: str, array: np.ndarray) -> None:
        if array.nbytes <= self.remaining:
            self.arrays[path] = array
            self.remaining -= array.nbytes


def decode(path: str) -> np.ndarray:
    """Pixels as uint8: grayscale stays one channel, every other mode becomes RGB."""
    with Image.open(path) as image:
        image.load()
        mode = "L" if image.mode in ("L", "1") else "RGB"
        return np.asarray(image.convert(mode) if image.mode != mode else image)


class ImageFileDataset(Dataset):
    """(path, label) pairs yielding (PIL image, label); from the decode cache when present."""

    def __init__(self, samples: list[Sample], cache: DecodeCache | None = None) -> None:
        self.samples = samples
        self.cache = cache

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        array = self.cache.arrays.get(path) if self.cache is not None else None
        if array is None:
            array = decode(path)
        return Image.fromarray(array), label


def class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(class_dir: Path, skipped: list[Path] | None = None) -> list[Path]:
    """The images under ``class_dir``; other files (hidden ones aside) go to ``skipped``."""
    files = sorted(
        p
        for p in class_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(class_dir).parts)
    )
    if skipped is not None:
        skipped += [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    return [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]


def skipped_entry(skipped: list[Path]) -> dict:
    """``info.skipped_files``: how many files were not read, why, by extension, a few names."""
    by_extension = Counter(p.suffix.lower() or "(none)" for p in skipped)
    return {
        "count": len(skipped),
        "why": SKIPPED_WHY,
        "by_extension": dict(sorted(by_extension.items())),
        "examples": [str(p) for p in skipped[:SKIPPED_EXAMPLES]],
    }


def decoded_or_problem(path: str) -> np.ndarray | str:
    """The decoded pixels, or why PIL cannot decode the whole file."""
    try:
        return decode(path)
    except Exception as exc:  # PIL raises many types for corrupt data
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def skipped_note(entry: dict) -> str:
    """One line from ``info.skipped_files``: how many files were not read and why."""
    kinds = ", ".join(f"{ext} x{count}" for ext, count in entry["by_extension"].items())
    return f"{entry['count']} files skipped, {entry['why']}: {kinds}"


def scan_split(
    split_dir: Path, class_to_index: dict[str, int], allowed_missing: bool, skipped: list[Path]
) -> list[Sample]:
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
        files = list_images(split_dir / name, skipped)
        if not files:
            raise DataError(f"{split_dir / name}: empty class folder (no images)")
        samples += [(str(p), class_to_index[name]) for p in files]
    return samples


def decode_all(
    samples: list[Sample], skip_bad: bool, bad: list[str], cache: DecodeCache
) -> list[Sample]:
    """Decode every image once (in threads: PIL releases the GIL), keeping the pixels in the
    cache; a bad image stops the build, or is skipped and recorded."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = pool.map(lambda sample: decoded_or_problem(sample[0]), samples)
        kept = []
        for sample, result in zip(samples, results, strict=True):
            if isinstance(result, np.ndarray):
                cache.offer(sample[0], result)
                kept.append(sample)
            elif skip_bad:
                bad.append(sample[0])
            else:
                raise DataError(
                    f"{sample[0]}: unreadable image ({result}); "
                    "fix or remove it, or pass --skip-bad-images to skip and count such files"
                )
    return kept


def stratified_split(
    samples: list[Sample], fraction: float, seed: int, classes: list[str]
) -> tuple[list[Sample], list[Sample]]:
    """(train, val): per class, a seeded ``fraction`` (at least one image, never all) to val."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    train, val = [], []
    for label in sorted(by_class):
        members = by_class[label]
        if len(members) < 2:
            raise DataError(
                f"train/{classes[label]} has {len(members)} image: too few to split off a "
                "validation set; add images or a val/ folder"
            )
        order = rng.permutation(len(members))
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        chosen = set(order[:count].tolist())
        for index, sample in enumerate(members):
            (val if index in chosen else train).append(sample)
    return train, val


@dataclass
class FolderReader:
    """Reads the splits of one data root with shared class indices, cache and bad-image list."""

    class_to_index: dict[str, int]
    options: FolderOptions
    skip_bad: bool
    cache: DecodeCache

    def __post_init__(self) -> None:
        self.bad: list[str] = []
        self.skipped: list[Path] = []

    def read(self, split_dir: Path, allowed_missing: bool = False) -> list[Sample]:
        samples = scan_split(split_dir, self.class_to_index, allowed_missing, self.skipped)
        if self.options.verify_images:
            samples = decode_all(samples, self.skip_bad, self.bad, self.cache)
        if not samples:
            raise DataError(f"{split_dir}: no readable images left")
        return samples

    def dataset(self, samples: list[Sample]) -> ImageFileDataset:
        return ImageFileDataset(samples, self.cache)


def restricted_sets(options: FolderOptions, names: list[str], ood_root: Path) -> set[str]:
    if isinstance(options.restrict_ood_argmax, bool):
        return set(names) if options.restrict_ood_argmax else set()
    unknown = sorted(set(options.restrict_ood_argmax) - set(names))
    if unknown:
        raise DataError(
            f"benchmark_options.restrict_ood_argmax: no OOD set {unknown[0]!r} in {ood_root} "
            f"(found: {', '.join(names)})"
        )
    return set(options.restrict_ood_argmax)


def data_root_of(context: BuildContext) -> Path:
    if context.data_root is None:
        raise DataError("benchmark 'folder' needs --data-root DIR (with train/ test/ ood/)")
    root = Path(context.data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist")
    return root


@register_benchmark("folder", options_model=FolderOptions)
def build_folder_benchmark(context: BuildContext, options: FolderOptions) -> Benchmark:
    root = data_root_of(context)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"missing split directory {train_dir}")
    classes = class_folders(train_dir)
    if not classes:
        raise DataError(f"{train_dir}: no class folders")
    ood_root = root / "ood"
    if not ood_root.is_dir() or not class_folders(ood_root):
        raise DataError(f"missing OOD sets: expected {ood_root}/<name>/<class>/ folders")
    reader = FolderReader(
        {name: i for i, name in enumerate(classes)},
        options,
        context.skip_bad_images,
        DecodeCache(options.decode_cache_mb * 2**20),
    )

    train = reader.read(train_dir)
    info: dict = {"data_root": str(root.resolve())}
    if (root / "val").is_dir():
        val = reader.read(root / "val")
    else:
        train, val = stratified_split(train, options.val_fraction, options.split_seed, classes)
        info["val_split"] = {
            "from": "train",
            "fraction": options.val_fraction,
            "seed": options.split_seed,
            "stratified": True,
            "train": len(train),
            "val": len(val),
        }
    test = reader.read(root / "test")

    names = class_folders(ood_root)
    restricted = restricted_sets(options, names, ood_root)
    ood = {}
    for name in names:
        samples = reader.read(ood_root / name, allowed_missing=True)
        present = tuple(sorted({label for _, label in samples}))
        ood[name] = EvalSplit(reader.dataset(samples), present if name in restricted else None)
    info["decoded_in_memory"] = len(reader.cache.arrays)
    if reader.skipped:
        info["skipped_files"] = skipped_entry(reader.skipped)
    return Benchmark(
        name=options.name or root.resolve().name,
        classes=classes,
        id_train=reader.dataset(train),
        id_val=reader.dataset(val),
        id_test=reader.dataset(test),
        ood=ood,
        augment=options.augment,
        bad_images=reader.bad,
        info=info,
    )
