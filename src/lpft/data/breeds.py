"""``living17`` and ``entity30``: BREEDS subpopulation shift within ImageNet.

Layout under ``--data-root``::

    imagenet/train/<wnid>/*.JPEG   imagenet/val/<wnid>/*.JPEG   (as for ``imagenet``)
    breeds/dataset_class_info.json  breeds/class_hierarchy.txt  breeds/node_names.txt

The three hierarchy files are BREEDS' modified WordNet hierarchy over the ImageNet classes. Each
superclass's ImageNet classes are split at random into source and target subpopulations, exactly
as the ``robustness`` package's ``make_living17`` / ``make_entity30`` with ``split="rand"`` do
(that package does not import with current torchvision, so the hierarchy is read here). ID:
source classes, ImageNet train images (5% held out as ID validation) and val images as ID test.
OOD ``target``: target classes, ImageNet val images. Labels are superclass indices. Paper
protocol: random-resized-crop and flip, 20 epochs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lpft.data.benchmark import Benchmark, BuildContext, EvalSplit, Requirement, register_benchmark
from lpft.data.folder import ImageFileDataset, list_images
from lpft.data.imagenet import GET_IMAGENET, IMAGENET_DIR
from lpft.data.ondisk import holdout_info, paper_defaults, split_files
from lpft.errors import DataError

BREEDS_DIR = "breeds"
HIERARCHY_FILES = ("dataset_class_info.json", "class_hierarchy.txt", "node_names.txt")
GET_BREEDS = (
    "the files in imagenet_class_hierarchy/modified/ of "
    "https://github.com/MadryLab/BREEDS-Benchmarks, copied into breeds/"
)
WORDNET_ROOT = "n00001740"  # 'entity'
SPLIT_SEED = 2  # robustness' random_seed for every BREEDS dataset


@dataclass(frozen=True)
class BreedsSpec:
    """Where the superclasses sit in the hierarchy and how many subclasses each keeps."""

    level: int
    ancestor: str | None
    subclasses: int


SPECS = {
    "living17": BreedsSpec(level=5, ancestor="n00004258", subclasses=4),  # 'living thing'
    "entity30": BreedsSpec(level=4, ancestor=None, subclasses=8),
}


class Hierarchy:
    """BREEDS' class hierarchy restricted to the ancestors of the ImageNet classes."""

    def __init__(self, leaf_numbers: dict[str, int], edges: Iterable[tuple[str, str]]) -> None:
        self.leaf_numbers = leaf_numbers
        parents: dict[str, set[str]] = {}
        for parent, child in edges:
            parents.setdefault(child, set()).add(parent)
        self.children: dict[str, set[str]] = {}
        frontier = [leaf for leaf in leaf_numbers if leaf in parents]
        seen = set(frontier)
        while frontier:
            node = frontier.pop()
            for parent in parents.get(node, ()):
                self.children.setdefault(parent, set()).add(node)
                if parent not in seen:
                    seen.add(parent)
                    frontier.append(parent)

    def successors(self, node: str) -> list[str]:
        return sorted(self.children.get(node, ()))

    def levels(self, root: str) -> dict[str, int]:
        """Depth of each node below ``root`` along its longest path (BREEDS' notion of level)."""
        order: list[str] = []
        visited: set[str] = set()

        def visit(node: str) -> None:
            visited.add(node)
            for child in self.successors(node):
                if child not in visited:
                    visit(child)
            order.append(node)

        visit(root)
        level = {root: 0}
        for node in reversed(order):  # parents before children
            for child in self.successors(node):
                level[child] = max(level.get(child, 0), level[node] + 1)
        return level

    def descendants(self, node: str) -> set[str]:
        found, frontier = {node}, [node]
        while frontier:
            for child in self.successors(frontier.pop()):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
        return found

    def leaves_under(self, node: str) -> set[str]:
        """ImageNet classes below ``node`` (not looking below a class), itself if it is one."""
        leaves, frontier = set(), [node]
        while frontier:
            for child in self.successors(frontier.pop()):
                if child in self.leaf_numbers:
                    leaves.add(child)
                else:
                    frontier.append(child)
        if node in self.leaf_numbers:
            leaves.add(node)
        return leaves


def read_hierarchy(directory: Path) -> tuple[Hierarchy, dict[str, str]]:
    """(hierarchy, node names) from the three BREEDS files."""
    try:
        class_info = json.loads((directory / "dataset_class_info.json").read_text())
        leaf_numbers = {str(wnid): int(number) for number, wnid, *_ in class_info}
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{directory / 'dataset_class_info.json'}: expected [[index, wnid, name], ...] ({exc})"
        ) from None
    edges = []
    for number, line in enumerate((directory / "class_hierarchy.txt").read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(
                f"{directory / 'class_hierarchy.txt'} line {number + 1}: expected 'parent child'"
            )
        edges.append((parts[0], parts[1]))
    names = {}
    for line in (directory / "node_names.txt").read_text().splitlines():
        wnid, _, name = line.partition("\t")
        if wnid:
            names[wnid] = name.strip()
    return Hierarchy(leaf_numbers, edges), names


def split_superclass(
    hierarchy: Hierarchy, superclass: str, subclasses: int, rng: np.random.RandomState
) -> tuple[list[str], list[str]]:
    """BREEDS' "rand" split: below the first node with several children, pool its classes
    (one list per child, in sorted child order, then sorted), draw ``subclasses`` of them
    without replacement and give the first half to the source, the rest to the target."""
    children = hierarchy.successors(superclass)
    while len(children) == 1:
        children = hierarchy.successors(children[0])
    pooled = [leaf for child in children for leaf in sorted(hierarchy.leaves_under(child))]
    drawn = [str(w) for w in rng.choice(sorted(pooled), subclasses, replace=False)]
    half = subclasses // 2
    if len(set(drawn)) != len(drawn):
        raise DataError(f"BREEDS superclass {superclass}: drew one class twice")
    return drawn[:half], drawn[half:]


@dataclass(frozen=True)
class BreedsClasses:
    superclasses: list[str]
    names: list[str]
    source: list[list[str]]  # per superclass, its source wnids
    target: list[list[str]]


def breeds_classes(hierarchy: Hierarchy, names: dict[str, str], spec: BreedsSpec) -> BreedsClasses:
    """Superclasses at ``spec.level`` (below ``spec.ancestor``) with at least ``spec.subclasses``
    ImageNet classes, in sorted order, each split into source and target subpopulations."""
    levels = hierarchy.levels(WORDNET_ROOT)
    allowed = hierarchy.descendants(spec.ancestor) if spec.ancestor else None
    candidates = sorted(
        n for n, lv in levels.items() if lv == spec.level and (allowed is None or n in allowed)
    )
    superclasses = [n for n in candidates if len(hierarchy.leaves_under(n)) >= spec.subclasses]
    if not superclasses:
        raise DataError(
            f"BREEDS hierarchy: no node at level {spec.level} has {spec.subclasses} classes"
        )
    rng = np.random.RandomState(SPLIT_SEED)
    source, target = [], []
    for superclass in superclasses:
        src, tgt = split_superclass(hierarchy, superclass, spec.subclasses, rng)
        source.append(src)
        target.append(tgt)
    return BreedsClasses(superclasses, [names.get(s, s) for s in superclasses], source, target)


def subpopulation_samples(split_dir: Path, groups: list[list[str]]) -> list[tuple[str, int]]:
    """Images of each group's ImageNet classes under ``split_dir``, labelled by group index."""
    samples = []
    for label, wnids in enumerate(groups):
        for wnid in wnids:
            folder = split_dir / wnid
            files = list_images(folder) if folder.is_dir() else []
            if not files:
                raise DataError(f"{folder}: missing or empty ImageNet class folder")
            samples += [(str(path), label) for path in files]
    return samples


class BreedsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    augment: Literal["none", "rrc_flip", "resize_crop_flip"] = "rrc_flip"
    id_val_fraction: float = Field(0.05, gt=0, lt=1)


def breeds_layout(root: Path, options: BreedsOptions) -> list[Requirement]:
    hierarchy = [
        Requirement(root / BREEDS_DIR / name, ("id_train", "id_val", "id_test", "ood:target"),
                    GET_BREEDS, "file")
        for name in HIERARCHY_FILES
    ]  # fmt: skip
    return [
        Requirement(root / IMAGENET_DIR / "train", ("id_train", "id_val"), GET_IMAGENET),
        Requirement(root / IMAGENET_DIR / "val", ("id_test", "ood:target"), GET_IMAGENET),
        *hierarchy,
    ]


def build_breeds(name: str, context: BuildContext, options: BreedsOptions) -> Benchmark:
    root = Path(context.data_root).expanduser()
    hierarchy, names = read_hierarchy(root / BREEDS_DIR)
    classes = breeds_classes(hierarchy, names, SPECS[name])
    train_dir, val_dir = root / IMAGENET_DIR / "train", root / IMAGENET_DIR / "val"
    train, val = split_files(
        subpopulation_samples(train_dir, classes.source), options.id_val_fraction
    )
    target = ImageFileDataset(subpopulation_samples(val_dir, classes.target))
    return Benchmark(
        name=name,
        classes=classes.names,
        id_train=train,
        id_val=val,
        id_test=ImageFileDataset(subpopulation_samples(val_dir, classes.source)),
        ood={"target": EvalSplit(target)},
        augment=options.augment,
        info=holdout_info(root, options.id_val_fraction, train, val),
    )


@register_benchmark(
    "living17", options_model=BreedsOptions, defaults=paper_defaults(20), layout=breeds_layout
)
def build_living17(context: BuildContext, options: BreedsOptions) -> Benchmark:
    return build_breeds("living17", context, options)


@register_benchmark(
    "entity30", options_model=BreedsOptions, defaults=paper_defaults(20), layout=breeds_layout
)
def build_entity30(context: BuildContext, options: BreedsOptions) -> Benchmark:
    return build_breeds("entity30", context, options)
