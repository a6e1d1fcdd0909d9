"""The benchmark interface: ID train/val/test, named OOD test sets, and how to score each.

A benchmark that reads data from disk declares its ``layout``: every path it expects under
``--data-root``, which splits need it and how to obtain it. ``create_benchmark`` checks the
layout before building anything, and ``lpft data check`` reports it split by split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch.utils.data import Dataset

from lpft.data.metrics import PRIMARY_METRIC, Metric, default_metrics
from lpft.errors import ConfigError, DataError
from lpft.registry import BENCHMARKS
from lpft.validation import validate_options

ID_SPLITS = ("id_train", "id_val", "id_test")


@dataclass
class EvalSplit:
    """A test set and how it is scored.

    ``class_subset`` restricts the argmax to those logits (e.g. ImageNet-R's 200 classes under a
    1000-way head); labels are always indices into the benchmark's classes. ``metrics`` maps a
    name to a function of (logits, labels, this split); ``accuracy`` is always among them and is
    the primary number. ``metadata`` holds per-example fields some metrics read (e.g. regions).
    """

    dataset: Dataset
    class_subset: tuple[int, ...] | None = None
    metrics: dict[str, Metric] = field(default_factory=default_metrics)
    metadata: dict[str, Sequence[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if PRIMARY_METRIC not in self.metrics:
            raise ValueError(f"an evaluation split must have the '{PRIMARY_METRIC}' metric")
        for name, values in self.metadata.items():
            if len(values) != len(self.dataset):
                raise DataError(
                    f"metadata '{name}' has {len(values)} values for {len(self.dataset)} examples"
                )

    def score(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Every metric of this split, by name (logits and labels in dataset order)."""
        return {name: float(metric(logits, labels, self)) for name, metric in self.metrics.items()}


@dataclass
class Benchmark:
    """Datasets yield ``(PIL.Image, int)``; ``augment`` names the training augmentation policy
    (see ``lpft.data.transforms``). OOD sets are used only for evaluation, never for selection.
    ``ood_val`` holds OOD validation twins where the data has them (keyed like ``ood``); no
    default selection rule reads them. ``id_test_scoring`` scores ID test with more than
    accuracy (its dataset is ``id_test``)."""

    name: str
    classes: list[str]
    id_train: Dataset
    id_val: Dataset
    id_test: Dataset
    ood: dict[str, EvalSplit]
    augment: str = "none"
    bad_images: list[str] = field(default_factory=list)
    # Facts about how the splits were made (e.g. a val split drawn from train), for results.json.
    info: dict[str, Any] = field(default_factory=dict)
    # OOD validation sets, read only for ``--oracle`` rows (selection on OOD val), never for the
    # protocol's own selection.
    ood_val: dict[str, EvalSplit] = field(default_factory=dict)
    id_test_scoring: EvalSplit | None = None

    def __post_init__(self) -> None:
        taken = sorted((set(self.ood) | set(self.ood_val)) & set(ID_SPLITS))
        if taken:
            raise DataError(f"benchmark '{self.name}': OOD sets cannot be named {taken}")
        if self.id_test_scoring is not None and self.id_test_scoring.dataset is not self.id_test:
            raise ValueError("id_test_scoring must score the id_test dataset")
        splits = {"id_train": self.id_train, "id_val": self.id_val, "id_test": self.id_test}
        splits |= {name: split.dataset for name, split in (self.ood | self.ood_val).items()}
        empty = [name for name, dataset in splits.items() if len(dataset) == 0]
        if empty:
            raise DataError(f"benchmark '{self.name}': split {empty[0]} has no examples")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def eval_splits(self) -> dict[str, EvalSplit]:
        """ID test first, then every OOD set, keyed by the name used in results."""
        return {"id_test": self.id_test_scoring or EvalSplit(self.id_test), **self.ood}


@dataclass(frozen=True)
class BuildContext:
    """What a benchmark builder may need from the run configuration."""

    data_root: Path | None
    cache_dir: Path
    skip_bad_images: bool


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Requirement:
    """A path a benchmark reads, the splits that need it and how a user obtains it."""

    path: Path
    splits: tuple[str, ...]
    how: str
    kind: Literal["dir", "file"] = "dir"

    def present(self) -> bool:
        return self.path.is_dir() if self.kind == "dir" else self.path.is_file()


Layout = Callable[[Path, Any], list[Requirement]]


@dataclass(frozen=True)
class BenchmarkEntry:
    build: Callable[[BuildContext, Any], Benchmark]
    options_model: type[BaseModel]
    defaults: dict[str, Any]
    layout: Layout | None = None


def register_benchmark(
    name: str,
    options_model: type[BaseModel] = NoOptions,
    defaults: dict[str, Any] | None = None,
    layout: Layout | None = None,
) -> Callable[[Callable[[BuildContext, Any], Benchmark]], Callable[[BuildContext, Any], Benchmark]]:
    """Register a builder ``build(context, options) -> Benchmark``.

    ``defaults`` is a config layer applied before the user's (e.g. the paper's epoch count for
    this benchmark: ``{"methods": {"ft": {"epochs": 20}}}``). ``layout(data_root, options)``
    lists the paths an on-disk benchmark expects (checked before ``build`` is called).
    """

    def decorator(build: Callable[[BuildContext, Any], Benchmark]):
        entry = BenchmarkEntry(build, options_model, defaults or {}, layout)
        BENCHMARKS.register(name)(entry)
        return build

    return decorator


def benchmark_defaults(name: str) -> dict[str, Any]:
    return BENCHMARKS.get(name).defaults


def validate_benchmark_options(name: str, options: dict[str, Any]) -> BaseModel:
    model = BENCHMARKS.get(name).options_model
    try:
        return validate_options(model, options, "config", prefix=("benchmark_options",))
    except ConfigError as exc:
        raise ConfigError(f"{exc} (benchmark '{name}')") from None


def data_root_of(name: str, data_root: Path | None) -> Path:
    if data_root is None:
        raise DataError(f"benchmark '{name}' reads data from disk: pass --data-root DIR")
    return Path(data_root).expanduser()


def expected_layout(name: str, options: BaseModel, data_root: Path | None) -> list[Requirement]:
    """The paths ``name`` reads under ``data_root`` (none for generated benchmarks)."""
    layout = BENCHMARKS.get(name).layout
    return [] if layout is None else layout(data_root_of(name, data_root), options)


def require_layout(name: str, options: BaseModel, data_root: Path | None) -> None:
    """Stop with one line naming the first missing path, before any data is read."""
    missing = [r for r in expected_layout(name, options, data_root) if not r.present()]
    if missing:
        first = missing[0]
        raise DataError(
            f"benchmark '{name}': {len(missing)} expected path(s) missing, first {first.path} "
            f"({first.how}); `lpft data check {name} --data-root {data_root}` lists them all"
        )


def create_benchmark(name: str, options: dict[str, Any], context: BuildContext) -> Benchmark:
    entry = BENCHMARKS.get(name)
    validated = validate_benchmark_options(name, options)
    require_layout(name, validated, context.data_root)
    return entry.build(context, validated)
