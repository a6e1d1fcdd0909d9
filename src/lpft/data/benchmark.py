"""The benchmark interface: ID train/val/test, named OOD test sets, and how to score each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from torch.utils.data import Dataset

from lpft.errors import ConfigError, DataError
from lpft.registry import BENCHMARKS
from lpft.validation import validate_options

ID_SPLITS = ("id_train", "id_val", "id_test")


@dataclass
class EvalSplit:
    """A test set. ``class_subset`` restricts the argmax to those logits (e.g. ImageNet-R's 200
    classes under a 1000-way head); labels are always indices into the benchmark's classes."""

    dataset: Dataset
    class_subset: tuple[int, ...] | None = None


@dataclass
class Benchmark:
    """Datasets yield ``(PIL.Image, int)``; ``augment`` names the training augmentation policy
    (see ``lpft.data.transforms``). OOD sets are used only for evaluation, never for selection."""

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

    def __post_init__(self) -> None:
        taken = sorted(set(self.ood) & set(ID_SPLITS))
        if taken:
            raise DataError(f"benchmark '{self.name}': OOD sets cannot be named {taken}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def eval_splits(self) -> dict[str, EvalSplit]:
        """ID test first, then every OOD set, keyed by the name used in results."""
        return {"id_test": EvalSplit(self.id_test), **self.ood}


@dataclass(frozen=True)
class BuildContext:
    """What a benchmark builder may need from the run configuration."""

    data_root: Path | None
    cache_dir: Path
    skip_bad_images: bool


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class BenchmarkEntry:
    build: Callable[[BuildContext, Any], Benchmark]
    options_model: type[BaseModel]
    defaults: dict[str, Any]


def register_benchmark(
    name: str,
    options_model: type[BaseModel] = NoOptions,
    defaults: dict[str, Any] | None = None,
) -> Callable[[Callable[[BuildContext, Any], Benchmark]], Callable[[BuildContext, Any], Benchmark]]:
    """Register a builder ``build(context, options) -> Benchmark``.

    ``defaults`` is a config layer applied before the user's (e.g. the paper's epoch count for
    this benchmark: ``{"methods": {"ft": {"epochs": 20}}}``).
    """

    def decorator(build: Callable[[BuildContext, Any], Benchmark]):
        BENCHMARKS.register(name)(BenchmarkEntry(build, options_model, defaults or {}))
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


def create_benchmark(name: str, options: dict[str, Any], context: BuildContext) -> Benchmark:
    entry = BENCHMARKS.get(name)
    return entry.build(context, validate_benchmark_options(name, options))
