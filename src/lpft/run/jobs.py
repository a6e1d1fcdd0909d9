"""A run as independent cell jobs sharing one run directory.

``run_cell(run_dir, key)`` is everything one job does: rebuild the run from the saved
``config.yaml``, claim the cell (``lpft.run.claims``), wait for the cells it depends on, fit it,
evaluate it and record both atomically. A cell's selection is still made on ID val alone (from
``fit.json``), so evaluating right after fitting reveals nothing a choice could use.

A job that ends in an exception leaves ``error.json`` in its cell (shown by ``lpft status``);
the next launch retries that cell. A cell whose training diverged is a recorded result, not an
error, and is never retried. ``collect`` turns the records into ``results.json``, the table and
the report, whichever processes wrote them.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lpft.analysis.report import write_report
from lpft.config import RunConfig
from lpft.errors import ConfigError, LpftError, RunLockedError
from lpft.io import atomic_write_json, read_json, run_lock
from lpft.methods import method_for
from lpft.run.claims import read_claim, try_claim
from lpft.run.rundir import CellRecord, RunDirectory
from lpft.run.runner import Runner

ERROR = "error.json"
DEPENDENCY_POLL_SECONDS = 2.0
LOCK_WAIT_SECONDS = 30.0


class DependencyNotReady(LpftError):
    """A required cell is neither finished nor being run: this cell cannot start."""


@dataclass
class CellState:
    key: str
    method: str
    seed: int | None
    cell: str
    state: str  # pending | running | done | failed
    detail: str = ""


def load_saved_config(run_dir: Path) -> RunConfig:
    """The configuration a run directory was started with (its ``out`` set to where it is)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no config.yaml there (not an lpft run directory)")
    saved = yaml.safe_load(path.read_text()) or {}
    saved["out"] = str(run_dir)
    return RunConfig.model_validate(saved)


def cell_key(rundir: RunDirectory, cell: CellRecord) -> str:
    """A cell's name for jobs and ``lpft status``: ``method/seed/cell`` under ``RUN/cells``."""
    return cell.directory.relative_to(rundir.root / "cells").as_posix()


def finished(cell: CellRecord) -> bool:
    """Nothing left to do: evaluated, or failed by divergence (a result, not an error)."""
    return cell.status == "failed" or (cell.status == "done" and cell.metrics is not None)


class CellJobs:
    """The run directory's cells as jobs: what each is, what state it is in, and running one."""

    def __init__(self, run_dir: Path, config: RunConfig | None = None) -> None:
        self.config = config or load_saved_config(run_dir)
        self.runner = Runner(self.config, quiet=True)
        self.runner._load_cells()
        self.rundir = self.runner.rundir

    def cells(self) -> list[tuple[str, CellRecord]]:
        """(method key, cell) in plan order: required methods before the methods needing them."""
        return [(p.key, cell) for p in self.runner.plan for cell in self.runner.cells[p.key]]

    def waves(self) -> list[list[str]]:
        """Cell keys grouped so that each group only depends on earlier groups."""
        depth: dict[str, int] = {}
        for planned in self.runner.plan:
            requires = method_for(planned.key).requires
            depth[planned.key] = 1 + max((depth[r] for r in requires), default=-1)
        waves: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
        for key, cell in self.cells():
            waves[depth[key]].append(cell_key(self.rundir, cell))
        return waves

    def find(self, key: str) -> tuple[str, CellRecord]:
        for method_key, cell in self.cells():
            if cell_key(self.rundir, cell) == key:
                return method_key, cell
        raise ConfigError(f"{self.rundir.root}: no cell {key!r} in this run's plan")

    def reload(self, method_key: str, cell: CellRecord) -> CellRecord:
        fresh = self.rundir.cell(method_key, cell.seed, cell.hparams)
        cells = self.runner.cells[method_key]
        cells[cells.index(cell)] = fresh
        return fresh

    def states(self) -> list[CellState]:
        return [self.state(method_key, cell) for method_key, cell in self.cells()]

    def state(self, method_key: str, cell: CellRecord) -> CellState:
        key = cell_key(self.rundir, cell)
        record = CellState(key, method_key, cell.seed, cell.directory.name, "pending")
        claim = read_claim(cell.directory)
        error = cell.directory / ERROR
        if finished(cell):
            record.state = "done" if cell.status == "done" else "failed"
            record.detail = "" if cell.status == "done" else f"diverged: {cell.error}"
        elif claim is not None and not claim.stale():
            record.state, record.detail = "running", claim.where()
        elif error.is_file():
            record.state, record.detail = "failed", read_json(error).get("error", "")
        elif cell.fitted:
            record.detail = "fitted, not evaluated"
        return record

    def unfinished(self, keys: list[str]) -> list[str]:
        return [key for key in keys if not finished(self.find(key)[1])]

    def run_cell(self, key: str, job: str = "") -> str:
        """Run one cell to the end; returns what happened in a few words."""
        method_key, cell = self.find(key)
        if finished(cell):
            return "done already"
        options = self.config.launcher
        claim = try_claim(cell.directory, options.lease_seconds, job)
        if claim is None:
            holder = read_claim(cell.directory)
            return f"held by {holder.where() if holder else 'another job'}"
        with claim:
            cell = self.reload(method_key, cell)
            if finished(cell):
                return "done already"
            try:
                self._wait_for_requirements(method_key, cell)
                self._fit_and_evaluate(method_key, cell)
            except BaseException as exc:
                self._record_error(cell, exc)
                raise
            (cell.directory / ERROR).unlink(missing_ok=True)
        return "done"

    def _fit_and_evaluate(self, method_key: str, cell: CellRecord) -> None:
        runner = self.runner
        device, benchmark, backbone = runner._build_inputs()
        with runner._progress() as progress:
            ctx = runner.context(device, benchmark, backbone, progress)
            if not cell.fitted:
                runner.fit_cell(ctx, method_key, cell)
            runner.evaluate_cell(ctx, method_key, cell)

    def _requirements(self, method_key: str, cell: CellRecord) -> list[tuple[str, CellRecord]]:
        seed = cell.seed if cell.seed is not None else 0
        needed = []
        for required in method_for(method_key).requires:
            for other in self.runner._cells_of(required, seed):
                needed.append((required, other))
        return needed

    def _wait_for_requirements(self, method_key: str, cell: CellRecord) -> None:
        """Block while another job runs a required cell; fail if one is not under way."""
        deadline = time.monotonic() + self.config.launcher.dependency_wait_seconds
        for required, other in self._requirements(method_key, cell):
            while True:
                other = self.reload(required, other)
                if other.fitted:
                    break
                claim = read_claim(other.directory)
                if claim is None or claim.stale():
                    raise DependencyNotReady(
                        f"{cell_key(self.rundir, cell)} needs "
                        f"{cell_key(self.rundir, other)}, which has not been fitted"
                    )
                if time.monotonic() > deadline:
                    raise DependencyNotReady(
                        f"{cell_key(self.rundir, cell)}: gave up waiting for "
                        f"{cell_key(self.rundir, other)} ({claim.where()})"
                    )
                time.sleep(DEPENDENCY_POLL_SECONDS)

    def _record_error(self, cell: CellRecord, exc: BaseException) -> None:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        why = f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")
        atomic_write_json(
            cell.directory / ERROR,
            {"error": why, "host": socket.gethostname(), "time": time.time()},
        )


def run_cell(
    run_dir: str | Path, key: str, job: str = "", config: dict[str, Any] | None = None
) -> str:
    """The entry point of one job (a Slurm job, a Ray task, a local process).

    ``config`` (plain, as ``RunConfig.to_plain``) is the launching configuration; it must agree
    with the run's ``config.yaml`` on everything that changes results, and defaults to it.
    """
    run_dir = Path(run_dir)
    resolved = None
    if config is not None:
        resolved = RunConfig.model_validate({**config, "out": str(run_dir)})
        RunDirectory(run_dir).check_config(resolved)
    return CellJobs(run_dir, resolved).run_cell(key, job)


def collect(run_dir: str | Path, config: RunConfig | None = None) -> dict[str, Any]:
    """Write ``results.json``, the table and (if configured) the report from the cell records."""
    jobs = CellJobs(Path(run_dir), config)
    runner = jobs.runner
    started = time.perf_counter()
    device, benchmark, backbone = runner._build_inputs()
    complete = all(finished(cell) for _key, cell in jobs.cells())
    with runner._progress() as progress:
        ctx = runner.context(device, benchmark, backbone, progress)
        results = runner._write_results(ctx, complete=complete, started=started)
    if complete and runner.config.report:
        write_report([runner.out], runner.out)
    if complete:
        runner.tracker.finish(runner.out)
    return results


def prepare_run_directory(config: RunConfig) -> Path:
    """Check (or write) the run directory's config, as a launcher does before submitting.

    The run lock is held for this moment only: another launch waits for it a little, while a
    one-process ``lpft run`` working in the same directory makes the launch fail.
    """
    runner = Runner(config, quiet=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            with run_lock(runner.out):
                runner.rundir.check_config(config)
                runner._build_inputs()
                runner.rundir.write_config(config)
            return runner.out
        except RunLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
