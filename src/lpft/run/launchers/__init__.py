"""Fan a run's cells out as jobs: in this process, on Slurm (submitit) or on Ray.

Launchers only submit and wait; the run directory coordinates (``lpft.run.jobs``). Cells are
submitted in dependency waves (LP before LP-FT), and only those not finished yet, so relaunching
the same command picks up where any earlier launch, crash or preemption left off.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from lpft.config import RunConfig
from lpft.run.jobs import CellJobs, collect, prepare_run_directory
from lpft.run.launchers.base import JobResult, Launcher
from lpft.run.launchers.local import LocalLauncher
from lpft.run.launchers.ray_tasks import RayLauncher
from lpft.run.launchers.slurm import SlurmLauncher

OTHERS_POLL_SECONDS = 2.0

LAUNCHERS: dict[str, type[Launcher]] = {
    "local": LocalLauncher,
    "slurm": SlurmLauncher,
    "ray": RayLauncher,
}


def launch(config: RunConfig, console: Console | None = None) -> dict[str, Any]:
    """Run every unfinished cell of ``config`` as a job, then collect the results."""
    console = console or Console(stderr=True)
    name = config.launcher.name or "local"
    run_dir = prepare_run_directory(config)
    launcher = LAUNCHERS[name](config)
    try:
        for wave in CellJobs(run_dir, config).waves():
            todo = CellJobs(run_dir, config).unfinished(wave)
            if todo:
                console.print(f"{name}: submitting {len(todo)} cell job(s)")
                report(launcher.run_wave(Path(run_dir), todo), console)
    finally:
        launcher.close()
    wait_for_other_launches(run_dir, config.launcher.dependency_wait_seconds)
    return collect(run_dir, config)


def report(results: list[JobResult], console: Console) -> None:
    """One line per job: ``KEY: done`` for a cell this launch ran."""
    styles = {"done": "green", "done already": "white"}
    for result in results:
        style = styles.get(result.message, "yellow") if result.ok else "red"
        console.print(f"[{style}]{result.key}: {result.message}[/]", highlight=False)


def wait_for_other_launches(run_dir: Path, timeout: float) -> None:
    """Before collecting, let cells that another launch is running finish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(s.state == "running" for s in CellJobs(run_dir).states()):
            return
        time.sleep(OTHERS_POLL_SECONDS)


__all__ = ["LAUNCHERS", "JobResult", "Launcher", "launch"]
