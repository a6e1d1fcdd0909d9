"""The method interface: a method turns (options, seed, hyperparameters) into candidates.

A *cell* is one (method, seed, hyperparameter setting) unit of work, checkpointed and resumed as
a whole. It yields one or more *candidates* (LP: one per C on its regularisation path; FT: the
best epoch of one learning rate), each with its ID validation accuracy. The runner selects, per
method and seed, the candidate with the best ID validation accuracy (first in grid order on
ties) and only then evaluates on ID test and OOD data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from lpft.engine.context import RunContext


@dataclass
class Candidate:
    """A selectable outcome of a cell; ``artifact`` is a file in the cell directory."""

    hparams: dict[str, float]
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


class Method(ABC):
    """Subclass, set ``name``/``options_model``, and decorate with ``@METHODS.register(name)``."""

    name: ClassVar[str]
    options_model: ClassVar[type[BaseModel]]
    requires: ClassVar[tuple[str, ...]] = ()
    seed_dependent: ClassVar[bool] = True

    @abstractmethod
    def cells(self, options: BaseModel) -> list[dict[str, float]]:
        """The hyperparameter settings to run, one cell each, in grid order."""

    @abstractmethod
    def fit(
        self,
        ctx: RunContext,
        options: BaseModel,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
    ) -> list[Candidate]:
        """Train on ID train, score on ID val, save artifacts in ``cell_dir``."""

    def describe(self, options: BaseModel) -> dict[str, str]:
        """Facts a results table must show next to this method (e.g. BatchNorm mode)."""
        return {}


def cell_id(hparams: dict[str, float]) -> str:
    """Directory name of a cell; ``repr`` keeps every distinct value distinct."""
    return ",".join(f"{k}={float(v)!r}" for k, v in hparams.items()) or "sweep"
