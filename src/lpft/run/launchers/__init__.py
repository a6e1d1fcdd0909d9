"""Fan a run's cells out as jobs: in this process, on Slurm (submitit) or on Ray.

Launchers only submit and wait; the plan decides what runs (``lpft.run.plan``) and the run
directory coordinates (``lpft.run.jobs``). A launch submits the cells that are ready (every cell
they need fitted) and not held by a live job, waits for them, and repeats until no cell is left
that it can run, so relaunching the same command picks up where any earlier launch, crash or
preemption left off. A cell whose job fails is recorded and retried up to
``launcher.max_failures`` times while the other cells go on; the launch then collects what
there is and ends with ``CellsFailed`` naming the cells that failed.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console

from lpft.config import RunConfig
from lpft.errors import LpftError
from lpft.run.claims import held_live
from lpft.run.jobs import CellJobs, collect, finished, prepare_run_directory
from lpft.run.launchers.base import JobResult, Launcher
from lpft.run.launchers.local import LocalLauncher
from lpft.run.launchers.ray_tasks import RayLauncher
from lpft.run.launchers.slurm import SlurmLauncher

OTHERS_POLL_SECONDS = 0.5

LAUNCHERS: dict[str, type[Launcher]] = {
    "local": LocalLauncher,
    "slurm": SlurmLauncher,
    "ray": RayLauncher,
}


class CellsFailed(LpftError):
    """Some cells' jobs failed (recorded in their ``error.json``); ``results`` holds the rest."""

    def __init__(self, message: str, results: dict[str, Any]) -> None:
        super().__init__(message)
        self.results = results


def launch(config: RunConfig, console: Console | None = None) -> dict[str, Any]:
    """Run every unfinished cell of ``config`` as a job, then collect the results."""
    console = console or Console(stderr=True)
    name = config.launcher.name or "local"
    run_dir = prepare_run_directory(config)
    launcher = LAUNCHERS[name](config)
    failures: Counter[str] = Counter()
    try:
        run_until_settled(launcher, run_dir, config, failures, console)
    finally:
        launcher.close()
    results = collect(run_dir, config)
    jobs = CellJobs(run_dir, config)
    failed = [key for key in failures if not finished(jobs.record(key))]
    if failed:
        raise CellsFailed(
            f"{len(failed)} cell(s) failed: {', '.join(failed)} (why: lpft status {run_dir})",
            results,
        )
    return results


def run_until_settled(
    launcher: Launcher, run_dir: Path, config: RunConfig, failures: Counter, console: Console
) -> None:
    """Submit ready cells until none is left that this launch can run: what remains is
    finished, failed ``max_failures`` times, waiting on such a cell, or still held by another
    launch after ``dependency_wait_seconds``."""
    options = config.launcher
    deadline = time.monotonic() + options.dependency_wait_seconds
    while True:
        jobs = CellJobs(run_dir, config)
        cells = jobs.plan.cells
        unfinished = [c.key for c in cells if not finished(jobs.record(c.key))]
        runnable = [key for key in unfinished if failures[key] < options.max_failures]
        lease = options.lease_seconds
        held = {key for key in runnable if held_live(run_dir / "cells" / key, lease)}
        todo = [key for key in jobs.plan.ready(runnable, jobs.fitted()) if key not in held]
        if todo:
            console.print(f"{config.launcher.name or 'local'}: submitting {len(todo)} cell job(s)")
            results = launcher.run_wave(Path(run_dir), todo)
            report(results, console)
            failures.update(result.key for result in results if not result.ok)
            continue
        if not held or time.monotonic() > deadline:
            return
        time.sleep(OTHERS_POLL_SECONDS)


def report(results: list[JobResult], console: Console) -> None:
    """One line per job: ``KEY: done`` for a cell this launch ran."""
    styles = {"done": "green", "done already": "white"}
    for result in results:
        style = styles.get(result.message, "yellow") if result.ok else "red"
        console.print(f"[{style}]{result.key}: {result.message}[/]", highlight=False)


__all__ = ["LAUNCHERS", "CellsFailed", "JobResult", "Launcher", "launch"]
