"""The plan of a run: its cells (method x seed x setting) and which cells each one needs.

Every way of running (the plain ``lpft run``, cell jobs on the local machine, Slurm or Ray)
takes its cells from this one graph, built from ``Method.requirements(options)``: a cell of a
method that builds on another (LP-FT on LP, a soup on FT) needs every cell of the required
method for the same seed. A cell is *ready* when every cell it needs is fitted; its artifacts
(checkpoints) may be released only when every cell that needs it is fitted too.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from lpft.config import RunConfig
from lpft.errors import ConfigError
from lpft.methods import method_for
from lpft.run.rundir import cell_path


@dataclass(frozen=True)
class PlannedMethod:
    key: str
    hidden: bool


@dataclass(frozen=True)
class PlannedCell:
    key: str  # "method/seed/cell", its directory under RUN/cells
    method: str
    seed: int | None
    hparams: dict[str, float]
    needs: tuple[str, ...]
    depth: int  # 0: needs nothing; else 1 + the deepest cell it needs


def plan_methods(config: RunConfig) -> list[PlannedMethod]:
    """Requested methods in order, each preceded by any method it needs (hidden if unasked)."""
    planned: list[PlannedMethod] = []
    seen: set[str] = set()

    def add(key: str, hidden: bool) -> None:
        for requirement in method_for(key).requirements(config.method_options(key)):
            if requirement not in seen:
                add(requirement, requirement not in config.methods)
        if key not in seen:
            seen.add(key)
            planned.append(PlannedMethod(key, hidden))

    for key in config.methods:
        add(key, False)
    return planned


def seed_dependent(config: RunConfig, key: str) -> bool:
    return method_for(key).seed_dependent(config.method_options(key))


class RunPlan:
    """The cells of ``config`` in plan order (every cell after the cells it needs)."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.methods = plan_methods(config)
        self.cells: list[PlannedCell] = []
        self._by_key: dict[str, PlannedCell] = {}
        self._dependents: dict[str, list[str]] = {}
        for planned in self.methods:
            self._add_method(planned.key)

    def _seeds(self, key: str) -> list[int | None]:
        return list(range(self.config.seeds)) if seed_dependent(self.config, key) else [None]

    def _add_method(self, key: str) -> None:
        method = method_for(key)
        options = self.config.method_options(key)
        for seed in self._seeds(key):
            needs = tuple(
                other.key
                for required in method.requirements(options)
                for other in self.cells_of(required, 0 if seed is None else seed)
            )
            depth = 1 + max((self._by_key[k].depth for k in needs), default=-1)
            for hparams in method.cells(options):
                cell = PlannedCell(
                    cell_path(key, seed, hparams), key, seed, dict(hparams), needs, depth
                )
                self.cells.append(cell)
                self._by_key[cell.key] = cell
                self._dependents[cell.key] = []
                for needed in needs:
                    self._dependents[needed].append(cell.key)

    def cell(self, key: str) -> PlannedCell:
        try:
            return self._by_key[key]
        except KeyError:
            raise ConfigError(f"no cell {key!r} in this run's plan") from None

    def cells_of(self, method: str, seed: int | None) -> list[PlannedCell]:
        """``method``'s cells for ``seed`` (its shared cells when it does not depend on it)."""
        if not seed_dependent(self.config, method):
            seed = None
        return [c for c in self.cells if c.method == method and c.seed == seed]

    def dependents(self, key: str) -> list[str]:
        """The cells that need ``key``."""
        return list(self._dependents[key])

    def waves(self) -> list[list[str]]:
        """Cell keys grouped so that each group only needs cells of earlier groups."""
        waves: list[list[str]] = [[] for _ in range(1 + max(c.depth for c in self.cells))]
        for cell in self.cells:
            waves[cell.depth].append(cell.key)
        return waves

    def ready(self, pending: list[str], fitted: Container[str]) -> list[str]:
        """The ``pending`` cells whose needed cells are all fitted, in plan order."""
        return [key for key in pending if all(n in fitted for n in self._by_key[key].needs)]

    def releasable(self, key: str, fitted: Container[str]) -> bool:
        """No pending cell needs ``key``'s artifacts any more."""
        return all(dependent in fitted for dependent in self._dependents[key])
