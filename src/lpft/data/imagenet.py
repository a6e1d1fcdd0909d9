"""``imagenet``: ImageNet-1k to ImageNet-V2, -R, -A and -Sketch.

Layout under ``--data-root``::

    imagenet/train/<wnid>/*.JPEG          the 1000 training class folders
    imagenet/val/<wnid>/*.JPEG            the 50,000 validation images sorted into class folders
    imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg
    imagenet-r/<wnid>/*.jpg               200 classes
    imagenet-a/<wnid>/*.jpg               200 classes
    imagenet-sketch/<wnid>/*.JPEG         the archive's sketch/ folder, renamed

Class indices are the sorted training folder names (the standard ImageNet order); V2 names its
folders by that index. ID: ImageNet train (1% of each class held out as ID validation) and val.
OOD: ``v2``, ``r``, ``a``, ``sketch``; the head is 1000-way and for ``r`` and ``a`` the argmax is
restricted to the classes they contain. 10 epochs (PAPER.md); PAPER.md names no augmentation for
this benchmark, so the default is the usual random-resized-crop and flip.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lpft.data.benchmark import Benchmark, BuildContext, EvalSplit, Requirement, register_benchmark
from lpft.data.folder import ImageFileDataset, class_folders, list_images
from lpft.data.ondisk import holdout_info, paper_defaults, split_files
from lpft.errors import DataError

IMAGENET_CLASSES = 1000
WNID = re.compile(r"^n\d{8}$")

IMAGENET_DIR = "imagenet"
GET_IMAGENET = (
    "ILSVRC2012 train and val from https://image-net.org/download (registration); sort the val "
    "images into <wnid>/ folders, e.g. with the widely used valprep.sh"
)
OOD_SOURCES = {
    "v2": (
        "imagenetv2-matched-frequency-format-val",
        "extract imagenetv2-matched-frequency.tar.gz from https://github.com/modestyachts/ImageNetV2",
    ),
    "r": ("imagenet-r", "extract https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"),
    "a": ("imagenet-a", "extract https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar"),
    "sketch": (
        "imagenet-sketch",
        "ImageNet-Sketch from https://github.com/HaohanWang/ImageNet-Sketch; rename its sketch/ "
        "folder to imagenet-sketch/",
    ),
}
RESTRICTED = ("r", "a")  # 200-class subsets: argmax over their classes only


class ImageNetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    augment: Literal["none", "rrc_flip", "resize_crop_flip"] = "rrc_flip"
    id_val_fraction: float = Field(0.01, gt=0, lt=1)
    ood: list[Literal["v2", "r", "a", "sketch"]] = Field(
        default_factory=lambda: ["v2", "r", "a", "sketch"], min_length=1
    )


def imagenet_layout(root: Path, options: ImageNetOptions) -> list[Requirement]:
    base = root / IMAGENET_DIR
    requirements = [
        Requirement(base / "train", ("id_train", "id_val"), GET_IMAGENET),
        Requirement(base / "val", ("id_test",), GET_IMAGENET),
    ]
    for name in options.ood:
        folder, how = OOD_SOURCES[name]
        requirements.append(Requirement(root / folder, (f"ood:{name}",), how))
    return requirements


def imagenet_wnids(train_dir: Path) -> list[str]:
    """The 1000 class folders of ImageNet train, sorted: position = class index."""
    wnids = class_folders(train_dir)
    strange = [w for w in wnids if not WNID.match(w)]
    if strange:
        raise DataError(f"{train_dir}: folders {strange[:3]} are not WordNet ids like n01440764")
    if len(wnids) != IMAGENET_CLASSES:
        raise DataError(f"{train_dir}: {len(wnids)} class folders, expected {IMAGENET_CLASSES}")
    return wnids


def folder_samples(split_dir: Path, folder_to_label: dict[str, int]) -> list[tuple[str, int]]:
    """(path, label) of every image under ``split_dir/<folder>/``; unknown folders are an error."""
    found = class_folders(split_dir)
    unknown = [f for f in found if f not in folder_to_label]
    if unknown:
        raise DataError(f"{split_dir}: folders {unknown[:3]} are not ImageNet classes")
    samples = [
        (str(path), folder_to_label[folder])
        for folder in found
        for path in list_images(split_dir / folder)
    ]
    if not samples:
        raise DataError(f"{split_dir}: no images")
    return samples


def ood_split(name: str, directory: Path, wnid_index: dict[str, int]) -> EvalSplit:
    if name == "v2":
        by_number = {str(i): i for i in range(IMAGENET_CLASSES)}
        return EvalSplit(ImageFileDataset(folder_samples(directory, by_number)))
    samples = folder_samples(directory, wnid_index)
    subset = tuple(sorted({label for _, label in samples})) if name in RESTRICTED else None
    return EvalSplit(ImageFileDataset(samples), subset)


@register_benchmark(
    "imagenet", options_model=ImageNetOptions, defaults=paper_defaults(10), layout=imagenet_layout
)
def build_imagenet(context: BuildContext, options: ImageNetOptions) -> Benchmark:
    root = Path(context.data_root).expanduser()
    wnids = imagenet_wnids(root / IMAGENET_DIR / "train")
    wnid_index = {wnid: i for i, wnid in enumerate(wnids)}
    train_samples = folder_samples(root / IMAGENET_DIR / "train", wnid_index)
    train, val = split_files(train_samples, options.id_val_fraction)
    ood = {name: ood_split(name, root / OOD_SOURCES[name][0], wnid_index) for name in options.ood}
    return Benchmark(
        name="imagenet",
        classes=wnids,
        id_train=train,
        id_val=val,
        id_test=ImageFileDataset(folder_samples(root / IMAGENET_DIR / "val", wnid_index)),
        ood=ood,
        augment=options.augment,
        info=holdout_info(root, options.id_val_fraction, train, val),
    )
