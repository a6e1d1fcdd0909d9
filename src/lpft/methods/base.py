"""The method interface: a method turns (options, seed, hyperparameters) into candidates.

A *cell* is one (method, seed, hyperparameter setting) unit of work, checkpointed and resumed as
a whole. It yields one or more *candidates* (LP: one per C on its regularisation path; FT: the
best epoch of one learning rate), each with its ID validation accuracy. The runner selects, per
method and seed, the candidate with the best ID validation accuracy (first in grid order on
ties) and only then evaluates on ID test and OOD data.

A method owns its artifacts: it writes them into its cell directory during ``fit`` and turns a
candidate back into a ``Predictor`` in ``predictors``; the runner never opens them. A method that
builds on another (LP-FT on LP) names it in ``requirements`` (by default the class's
``requires``) and receives that method's selected candidate for the same seed, as a ``Selected``,
in ``fit``'s ``required`` argument; a ``Selected`` also offers every other successful candidate of
that method and seed (e.g. for a model soup over the whole learning-rate grid).

What a method may ask of the run is the ``MethodContext`` protocol below, so this package does
not depend on the run orchestration that drives it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
from pydantic import BaseModel
from rich.progress import Progress
from torch.utils.data import Dataset

from lpft.data.benchmark import Benchmark
from lpft.models.backbone import Backbone, Classifier
from lpft.training.feature_cache import CachedFeatures
from lpft.training.features import ForwardOutputs
from lpft.training.resident import BatchedLoader


@dataclass
class Candidate:
    """A selectable outcome of a cell; ``artifact`` is a file in the cell directory."""

    hparams: dict[str, float | str]
    id_val: float
    kind: Literal["head", "model"]
    artifact: str
    index: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(**data)


@dataclass
class LinearHead:
    """Predicts with a linear head on the *pretrained* backbone's features (raw coordinates)."""

    weight: torch.Tensor
    bias: torch.Tensor


@dataclass
class Network:
    """Predicts with a whole network (backbone and head), e.g. a fine-tuned one."""

    model: Classifier


Predictor = LinearHead | Network


@dataclass
class Available:
    """One successful candidate of a required method for the seed; ``load()`` builds its
    predictor (from that method's own artifacts) when it is needed."""

    candidate: Candidate
    load: Callable[[], Predictor]


@dataclass
class Selected:
    """A required method's candidate selected on ID val for one seed, ready to predict with, and
    every successful candidate of that method and seed (``available``, in grid order)."""

    candidate: Candidate
    predictor: Predictor
    available: list[Available] = field(default_factory=list)


class FeatureSource(Protocol):
    def get(self, split: str, with_blocks: bool = False) -> ForwardOutputs:
        """The pretrained backbone's outputs on ``split`` (computed once, then reused)."""
        ...

    def augmented(self, split: str, seed: int) -> ForwardOutputs:
        """The outputs on one pass of ``split`` through the training transform, augmentation
        seeded by ``seed`` (computed once per seed, then reused)."""
        ...

    def on_disk(self, split: str) -> CachedFeatures | None:
        """The eval-transform features of ``split`` as an on-disk cache entry (extracted into
        it first if absent), not read into memory: ``feature_chunks()`` reads blocks of rows.
        None when this run keeps features in memory only (no disk cache, or under torchrun)."""
        ...


class MethodContext(Protocol):
    """What the run offers a method while it fits or predicts."""

    benchmark: Benchmark
    device: torch.device
    autocast_dtype: torch.dtype | None
    num_workers: int
    progress: Progress
    current_label: str
    features: FeatureSource

    def train_dataset(self, seed: int) -> Dataset:
        """ID train through the training transform, augmentation seeded by ``seed``."""
        ...

    def eval_loader(self, split: str) -> BatchedLoader:
        """``split`` through the eval pipeline, in order, in batches already on the device."""
        ...

    def fresh_backbone(self) -> Backbone:
        """An independent copy of the pretrained backbone."""
        ...


class Method(ABC):
    """Subclass, set ``name``/``options_model``, and decorate with ``@METHODS.register(name)``."""

    name: ClassVar[str]
    options_model: ClassVar[type[BaseModel]]
    # Method keys whose selected candidate (same seed) this one starts from, whatever the
    # options; override ``requirements`` when they depend on the options.
    requires: ClassVar[tuple[str, ...]] = ()
    # A method whose benchmark defaults (grid, epochs, batch size) apply to this one when the
    # benchmark has none of its own, e.g. "ft" for a fine-tuning variant.
    defaults_from: ClassVar[str | None] = None

    @abstractmethod
    def cells(self, options: BaseModel) -> list[dict[str, float]]:
        """The hyperparameter settings to run, one cell each, in grid order."""

    @abstractmethod
    def fit(
        self,
        ctx: MethodContext,
        options: BaseModel,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
        required: Mapping[str, Selected],
    ) -> list[Candidate]:
        """Train on ID train, score on ID val, save artifacts in ``cell_dir``."""

    @abstractmethod
    def predictors(
        self, ctx: MethodContext, cell_dir: Path, candidates: list[Candidate]
    ) -> Iterator[Predictor]:
        """One predictor per candidate, in order, built from this method's artifacts."""

    def check(self, options: BaseModel, backbone: Backbone) -> None:
        """Refuse (raise ``ConfigError``) what these options cannot do with this backbone, e.g.
        a zero-shot head without a text tower. The runner calls it for every planned method
        once the backbone is built, before any feature extraction or training."""
        return None

    def seed_dependent(self, options: BaseModel) -> bool:
        """False when, with these options, the outcome does not depend on the seed: one cell
        then serves every seed (and the summary counts it once)."""
        return True

    def requirements(self, options: BaseModel) -> tuple[str, ...]:
        """Keys of the methods whose selections (same seed) ``fit`` receives in ``required``;
        the runner fits them first."""
        return self.requires

    def requirement_options(self, options: BaseModel) -> dict[str, dict[str, Any]]:
        """Option settings for required methods that the run does not list itself, by key
        (wise-ft: its base fine-tunes from wise-ft's θ₀)."""
        return {}

    def check_requirements(
        self, options: BaseModel, options_of: Callable[[str], BaseModel]
    ) -> None:
        """Raise ``ConfigError`` (one line) when the required methods, with the options this
        run gives them (``options_of(key)``), cannot serve this method; called before any work."""
        return None

    def starts_from(self, options: BaseModel) -> str | None:
        """The network this method trains from, when it is the pretrained backbone with a head
        another method gives: ``"lp"`` (the LP head selected for the seed) or ``"zeroshot"``
        (the zero-shot head); None otherwise (a fresh head, or no network)."""
        return None

    def companions(self, key: str, options: BaseModel) -> dict[str, dict[str, Any]]:
        """Variants of the run's method ``key`` that the run lists right after it, each a row
        of its own, as key -> options (wise-ft: the paper's fixed α = 0.5); a key the run
        already lists keeps its own options."""
        return {}

    def sweep_axes(self, options: BaseModel) -> tuple[str, ...]:
        """Names of the hyperparameters a candidate varies over (the tables' and figures' axes),
        the main axis first."""
        first = self.cells(options)[0]
        return tuple(first)

    def axis_bounds(self, options: BaseModel) -> dict[str, tuple[float, float]]:
        """Axes whose values cannot go past a bound (WiSE-FT's α in [0, 1]): a selection at
        such a bound is no sign that the grid was too narrow."""
        return {}

    def curve_axis(self, options: BaseModel) -> str | None:
        """An axis along which the ID-vs-OOD scatter joins this method's candidates into a
        line (WiSE-FT's mixing coefficient); None for none."""
        return None

    def quick_options(self, options: BaseModel) -> dict[str, Any]:
        """Option updates for ``--quick``: a seconds-long version of this method's sweep."""
        return {}

    def fit_recorded(self, cell_dir: Path) -> None:
        """Called once the runner has recorded a cell's outcome: drop resume state."""
        return None

    def release(self, cell_dir: Path, candidates: list[Candidate]) -> None:
        """Called after every candidate is evaluated (unless checkpoints are kept): delete
        artifacts that are no longer needed."""
        return None

    def describe(self, options: BaseModel) -> dict[str, str]:
        """Facts a results table must show next to this method (e.g. BatchNorm mode)."""
        return {}


def cell_id(hparams: dict[str, float | str]) -> str:
    """Directory name of a cell; ``repr`` keeps every distinct number distinct."""
    return ",".join(f"{k}={_cell_value(v)}" for k, v in hparams.items()) or "sweep"


def _cell_value(value: float | str) -> str:
    return value.replace("/", "_") if isinstance(value, str) else repr(float(value))
