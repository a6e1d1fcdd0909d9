"""The on-disk layout of a run and the records that make it resumable.

::

    RUN/config.yaml                 resolved configuration (checked on resume)
    RUN/results.json                everything measured (rewritten after every cell)
    RUN/summary.md                  the table
    RUN/cells/<method>/<seed>/<cell>/fit.json      candidates with ID val accuracy
    RUN/cells/<method>/<seed>/<cell>/metrics.json  ID test / OOD accuracy, distortion
    RUN/cells/<method>/<seed>/<cell>/{last,best,heads}.pt
    RUN/cells/<method>/<seed>/<cell>/claim.json, heartbeat.<token>   who runs it (run/claims.py)
    RUN/cells/<method>/<seed>/<cell>/attempts.jsonl, error.json      its attempts (run/cell.py)

A cell with ``fit.json`` is never trained again; one with ``last.pt`` resumes from it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lpft.config import RunConfig
from lpft.errors import ConfigError, LpftError, RunLockedError
from lpft.io import atomic_write_json, atomic_write_yaml, read_json, run_lock
from lpft.methods.base import Candidate, cell_id

# Settings that may change between a run and its resumption without changing any number
# (``quick`` only records that the profile was applied: the values it sets are compared).
RESUMABLE_DIFFERENCES = frozenset(
    {
        "out",
        "report",
        "keep_checkpoints",
        "num_workers",
        "store_max_mb",
        "feature_cache",
        "quick",
        "launcher",
        "tracking",
    }
)
SHARED_SEED = "shared"
# Every holder of the run lock keeps it for moments (config, results.json), so a waiter gets it.
LOCK_WAIT_SECONDS = 30.0


@dataclass
class CellRecord:
    method: str
    seed: int | None
    hparams: dict[str, float]
    directory: Path
    status: str = "pending"
    error: str | None = None
    seconds: float = 0.0
    candidates: list[Candidate] = field(default_factory=list)
    metrics: list[dict[str, Any]] | None = None

    @property
    def fitted(self) -> bool:
        return self.status in ("done", "failed")

    def fit_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "seed": self.seed,
            "hparams": self.hparams,
            "status": self.status,
            "error": self.error,
            "seconds": self.seconds,
            "candidates": [c.to_json() for c in self.candidates],
        }


def cell_path(method: str, seed: int | None, hparams: dict[str, float]) -> str:
    """A cell's directory under ``RUN/cells`` (also its name for jobs and ``lpft status``)."""
    seed_part = SHARED_SEED if seed is None else f"seed{seed}"
    return f"{method}/{seed_part}/{cell_id(hparams)}"


class RunDirectory:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def results_path(self) -> Path:
        return self.root / "results.json"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.md"

    def cell(self, method: str, seed: int | None, hparams: dict[str, float]) -> CellRecord:
        directory = self.root / "cells" / cell_path(method, seed, hparams)
        record = CellRecord(method, seed, dict(hparams), directory)
        fit_path = directory / "fit.json"
        if fit_path.is_file():
            saved = read_json(fit_path)
            try:
                record.status = saved["status"]
                record.error = saved["error"]
                record.seconds = saved["seconds"]
                record.candidates = [Candidate.from_json(c) for c in saved["candidates"]]
            except (KeyError, TypeError) as exc:
                raise LpftError(
                    f"{fit_path}: not a cell record (missing or bad {exc}); "
                    f"delete {directory} to redo this cell"
                ) from None
        metrics_path = directory / "metrics.json"
        if metrics_path.is_file():
            record.metrics = read_json(metrics_path)
        return record

    def save_fit(self, record: CellRecord) -> None:
        atomic_write_json(record.directory / "fit.json", record.fit_json())

    def save_metrics(self, record: CellRecord) -> None:
        atomic_write_json(record.directory / "metrics.json", record.metrics)

    def check_config(self, config: RunConfig) -> None:
        """Refuse to resume a run whose saved config differs in anything that changes results."""
        if not self.config_path.is_file():
            return
        plain = config.to_plain()
        try:
            saved = yaml.safe_load(self.config_path.read_text()) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{self.config_path}: not valid YAML; cannot resume") from None
        difference = first_difference(saved, plain, RESUMABLE_DIFFERENCES)
        if difference is not None:
            raise ConfigError(
                f"{self.root} holds a run with a different config ({difference}); "
                "resume with the same settings, or choose another --out"
            )

    def write_config(self, config: RunConfig) -> None:
        if not self.config_path.is_file():
            atomic_write_yaml(self.config_path, config.to_plain())


def first_difference(old: Any, new: Any, ignore: frozenset[str], path: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if not path and key in ignore:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                return f"{where} only in {'new' if key in new else 'saved'} config"
            found = first_difference(old[key], new[key], ignore, where)
            if found:
                return found
        return None
    if old != new:
        return f"{path}: saved {old!r}, now {new!r}"
    return None


def default_out_dir(config: RunConfig) -> Path:
    model = config.model.replace(":", "-").replace("/", "_").replace("?", "_")
    data = f"-{config.data_root.name}" if config.data_root else ""
    return Path("runs") / f"{config.benchmark}{data}__{model}"


@contextlib.contextmanager
def run_directory_lock(root: Path) -> Iterator[None]:
    """The run lock of ``root``, waited for up to ``LOCK_WAIT_SECONDS`` (others hold it for
    moments)."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(run_lock(root))
                break
            except RunLockedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield
