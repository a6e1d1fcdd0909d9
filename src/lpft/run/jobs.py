"""A run as independent cell jobs sharing one run directory.

``run_cell(run_dir, key)`` is everything one job does: rebuild the run from the saved
``config.yaml``, claim the cell (``lpft.run.cell``), check that the cells it needs are fitted
(waiting while another job fits one), fit it, evaluate it and record both, every write fenced by
its claim. A cell's selection is still made on ID val alone (from ``fit.json``), so evaluating
right after fitting reveals nothing a choice could use. Checkpoints are released once no pending
cell of the plan needs them.

A job that ends in an exception leaves ``error.json`` and a ``failed`` attempt in its cell
(shown by ``lpft status``); the next launch retries that cell. A cell whose training diverged is
a recorded result, not an error, and is never retried. ``collect`` turns the records into
``results.json``, the table and the report, whichever processes wrote them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lpft.analysis.report import write_report
from lpft.config import RunConfig
from lpft.errors import ConfigError, LpftError
from lpft.run.cell import CellAttempt, attempt_cell, read_attempts, read_error, release_artifacts
from lpft.run.claims import ClaimLost, claim_is_live, read_claim
from lpft.run.plan import PlannedCell
from lpft.run.rundir import CellRecord, RunDirectory, run_directory_lock
from lpft.run.runner import Runner, outcome_of

DEPENDENCY_POLL_SECONDS = 1.0


class DependencyNotReady(LpftError):
    """A required cell is neither fitted nor being run: this cell cannot start."""


@dataclass
class CellState:
    key: str
    method: str
    seed: int | None
    cell: str
    state: str  # pending | running | done | failed
    detail: str = ""
    attempts: int = 0
    last_outcome: str = ""


def load_saved_config(run_dir: Path) -> RunConfig:
    """The configuration a run directory was started with (its ``out`` set to where it is)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no config.yaml there (not an lpft run directory)")
    saved = yaml.safe_load(path.read_text()) or {}
    saved["out"] = str(run_dir)
    return RunConfig.model_validate(saved)


def finished(cell: CellRecord) -> bool:
    """Nothing left to do: evaluated, or failed by divergence (a result, not an error)."""
    return cell.status == "failed" or (cell.status == "done" and cell.metrics is not None)


class CellJobs:
    """The run directory's cells as jobs: what each is, what state it is in, and running one."""

    def __init__(self, run_dir: Path, config: RunConfig | None = None) -> None:
        self.config = config or load_saved_config(run_dir)
        self.runner = Runner(self.config, quiet=True)
        self.runner.load_cells()
        self.plan = self.runner.plan
        self.rundir = self.runner.rundir

    def record(self, key: str) -> CellRecord:
        """``key``'s records as they are on disk now."""
        return self.runner.reload(key)

    def waves(self) -> list[list[str]]:
        return self.plan.waves()

    def states(self) -> list[CellState]:
        return [self.state(planned) for planned in self.plan.cells]

    def state(self, planned: PlannedCell) -> CellState:
        cell = self.record(planned.key)
        attempts = read_attempts(cell.directory)
        record = CellState(
            planned.key,
            planned.method,
            planned.seed,
            cell.directory.name,
            "pending",
            attempts=len(attempts),
            last_outcome=attempts[-1]["outcome"] if attempts else "",
        )
        holder = claim_is_live(cell.directory)
        error = read_error(cell.directory)
        if finished(cell):
            record.state = "done" if cell.status == "done" else "failed"
            record.detail = "" if cell.status == "done" else f"diverged: {cell.error}"
        elif holder is not None:
            record.state, record.detail = "running", holder.where()
        elif error is not None:
            record.state, record.detail = "failed", error
        elif cell.fitted:
            record.detail = "fitted, not evaluated"
        return record

    def fitted(self) -> set[str]:
        return {c.key for c in self.plan.cells if self.record(c.key).fitted}

    def run_cell(self, key: str, job: str = "", wait: bool = True) -> str:
        """Run one cell to the end; returns what happened in a few words.

        With ``wait``, a claim this process sees for the first time is watched for its lease
        before it counts as live (a job must not take a stopped holder for a working one)."""
        planned = self.plan.cell(key)
        if finished(self.record(key)):
            return "done already"
        lease = self.config.launcher.lease_seconds
        with attempt_cell(self.rundir.root / "cells" / key, lease, job, wait) as attempt:
            if attempt is None:
                holder = read_claim(self.rundir.root / "cells" / key)
                return f"held by {holder.where() if holder else 'another job'}"
            cell = self.record(key)
            if finished(cell):
                return "done already"
            with attempt.running():
                self._wait_for_requirements(planned)
                self._fit_and_evaluate(planned, cell, attempt)
        if not self.config.keep_checkpoints:
            release_artifacts(self.plan, self.rundir, [key, *planned.needs])
        return "done"

    def _fit_and_evaluate(
        self, planned: PlannedCell, cell: CellRecord, attempt: CellAttempt
    ) -> None:
        """Fit (unless an earlier attempt did: its outcome is on record as soon as the fit is,
        before the evaluation), then evaluate."""
        runner = self.runner
        device, benchmark, backbone = runner.build_inputs()
        with runner.progress() as progress:
            ctx = runner.context(device, benchmark, backbone, progress)
            if not cell.fitted:
                runner.fit_cell(ctx, planned.method, cell)
                attempt.finish(outcome_of(cell))
            runner.evaluate_cell(ctx, planned.method, cell)

    def _wait_for_requirements(self, planned: PlannedCell) -> None:
        """Block while another job fits a needed cell; fail if one is not under way."""
        deadline = time.monotonic() + self.config.launcher.dependency_wait_seconds
        for needed in planned.needs:
            while not self.record(needed).fitted:
                holder = claim_is_live(self.rundir.root / "cells" / needed)
                if holder is None:
                    raise DependencyNotReady(
                        f"{planned.key} needs {needed}, which has not been fitted"
                    )
                if time.monotonic() > deadline:
                    raise DependencyNotReady(
                        f"{planned.key}: gave up waiting for {needed} ({holder.where()})"
                    )
                time.sleep(DEPENDENCY_POLL_SECONDS)


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
    try:
        return CellJobs(run_dir, resolved).run_cell(key, job)
    except ClaimLost:
        return "lost its claim to another job; stopped"


def collect(run_dir: str | Path, config: RunConfig | None = None) -> dict[str, Any]:
    """Write ``results.json``, the table and (if configured) the report from the cell records,
    under the run lock; a more complete ``results.json`` already there is kept."""
    jobs = CellJobs(Path(run_dir), config)
    runner = jobs.runner
    started = time.perf_counter()
    device, benchmark, backbone = runner.build_inputs()
    runner.load_cells()
    complete = all(finished(cell) for cell in runner.records.values())
    with runner.progress() as progress:
        ctx = runner.context(device, benchmark, backbone, progress)
        results = runner.write_results(ctx, complete=complete, started=started)
    if complete and runner.config.report:
        write_report([runner.out], runner.out)
    if complete:
        runner.tracker.finish(runner.out)
    return results


def prepare_run_directory(config: RunConfig) -> Path:
    """Check (or write) the run directory's config, as a launcher does before submitting."""
    runner = Runner(config, quiet=True)
    with run_directory_lock(runner.out):
        runner.rundir.check_config(config)
        runner.build_inputs()
        runner.rundir.write_config(config)
    return runner.out
