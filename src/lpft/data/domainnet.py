"""``domainnet``: DomainNet sketch to real, painting and clipart, on SENTRY's 40 classes.

Layout under ``--data-root``::

    domainnet/<domain>/<class>/*.jpg              the extracted image archives
    domainnet/<domain>_train.txt, <domain>_test.txt   the official lists, lines "path label"

for the domains sketch, real, painting and clipart. List paths are relative to ``domainnet/``
(``sketch/airplane/sketch_001_000001.jpg 1``). Only the 40 classes of SENTRY's "mini" subset are
kept, relabelled 0..39 in SENTRY's order. ID: sketch train (5% of each class held out as ID
validation) and sketch test. OOD: the test lists of ``real``, ``painting`` and ``clipart``.
Paper protocol: resize, random crop and flip; 50 epochs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lpft.data.benchmark import Benchmark, BuildContext, EvalSplit, Requirement, register_benchmark
from lpft.data.folder import ImageFileDataset
from lpft.data.ondisk import holdout_info, paper_defaults, split_files
from lpft.errors import DataError

DOMAINNET_DIR = "domainnet"
ID_DOMAIN = "sketch"
OOD_DOMAINS = ("real", "painting", "clipart")

# SENTRY's 40-class DomainNet subset (github.com/virajprabhu/SENTRY, data/DomainNet/txt/*_mini.txt)
# in the order of its labels 0..39.
SENTRY_CLASSES = [
    "airplane", "ambulance", "apple", "backpack", "banana", "bathtub", "bear", "bed", "bee",
    "bicycle", "bird", "book", "bridge", "bus", "cake", "calculator", "camera", "car", "cat",
    "chair", "clock", "cow", "dog", "dolphin", "duck", "elephant", "fence", "fork", "horse",
    "house", "rabbit", "scissors", "strawberry", "table", "telephone", "truck", "butterfly",
    "sheep", "drums", "donut",
]  # fmt: skip
CLASS_INDEX = {name: i for i, name in enumerate(SENTRY_CLASSES)}

GET_IMAGES = "the '{domain}' archive (cleaned version for real) from http://ai.bu.edu/M3SDA/"
GET_LISTS = "{domain}_train.txt and {domain}_test.txt from http://ai.bu.edu/M3SDA/"


class DomainNetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    augment: Literal["none", "rrc_flip", "resize_crop_flip"] = "resize_crop_flip"
    id_val_fraction: float = Field(0.05, gt=0, lt=1)


def _domain_requirements(
    base: Path, domain: str, lists: dict[str, tuple[str, ...]]
) -> list[Requirement]:
    """The image folder and list files of one domain; ``lists`` maps 'train' / 'test' to the
    splits that list feeds."""
    fed = tuple(split for splits in lists.values() for split in splits)
    requirements = [Requirement(base / domain, fed, GET_IMAGES.format(domain=domain))]
    requirements += [
        Requirement(base / f"{domain}_{part}.txt", splits, GET_LISTS.format(domain=domain), "file")
        for part, splits in lists.items()
    ]
    return requirements


def domainnet_layout(root: Path, options: DomainNetOptions) -> list[Requirement]:
    base = root / DOMAINNET_DIR
    id_lists = {"train": ("id_train", "id_val"), "test": ("id_test",)}
    requirements = _domain_requirements(base, ID_DOMAIN, id_lists)
    for domain in OOD_DOMAINS:
        requirements += _domain_requirements(base, domain, {"test": (f"ood:{domain}",)})
    return requirements


def read_list(base: Path, domain: str, part: str) -> list[tuple[str, int]]:
    """The (path, SENTRY label) pairs of one official list, restricted to the 40 classes."""
    list_path = base / f"{domain}_{part}.txt"
    samples = []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        parts = fields[0].split("/")
        if len(fields) != 2 or len(parts) < 3 or parts[0] != domain:
            raise DataError(
                f"{list_path} line {number}: expected '{domain}/<class>/<file> <label>'"
            )
        if parts[1] in CLASS_INDEX:
            samples.append((str(base / fields[0]), CLASS_INDEX[parts[1]]))
    missing_classes = sorted(set(SENTRY_CLASSES) - {SENTRY_CLASSES[y] for _, y in samples})
    if missing_classes:
        raise DataError(f"{list_path}: no images of classes {missing_classes[:5]}")
    absent = next((path for path, _ in samples if not Path(path).is_file()), None)
    if absent is not None:
        raise DataError(f"{list_path} lists {absent}, which does not exist")
    return samples


@register_benchmark(
    "domainnet",
    options_model=DomainNetOptions,
    defaults=paper_defaults(50),
    layout=domainnet_layout,
)
def build_domainnet(context: BuildContext, options: DomainNetOptions) -> Benchmark:
    base = Path(context.data_root).expanduser() / DOMAINNET_DIR
    train, val = split_files(read_list(base, ID_DOMAIN, "train"), options.id_val_fraction)
    ood = {
        domain: EvalSplit(ImageFileDataset(read_list(base, domain, "test")))
        for domain in OOD_DOMAINS
    }
    return Benchmark(
        name="domainnet",
        classes=list(SENTRY_CLASSES),
        id_train=train,
        id_val=val,
        id_test=ImageFileDataset(read_list(base, ID_DOMAIN, "test")),
        ood=ood,
        augment=options.augment,
        info=holdout_info(base.parent, options.id_val_fraction, train, val),
    )
