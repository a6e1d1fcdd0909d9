"""``lpft status RUN``: every cell of a run and where it stands."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

STATE_STYLES = {"done": "green", "running": "cyan", "failed": "red", "pending": "white"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status",
        help="show each cell of a run: pending, running (where), done, failed (why), attempts",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="run directory")
    p.set_defaults(handler=status)


def training_speed(candidates: list) -> str:
    """Fine-tuning throughput of a fitted cell (its candidates' mean), blank for LP cells."""
    speeds = [c.info.get("images_per_second") for c in candidates if c.info]
    speeds = [speed for speed in speeds if speed]
    return f"{sum(speeds) / len(speeds):,.0f}" if speeds else ""


def status(args: argparse.Namespace) -> int:
    from lpft.run.jobs import CellJobs

    jobs = CellJobs(args.run_dir)
    states = jobs.states()
    speeds = [training_speed(jobs.record(s.key).candidates) for s in states]
    table = Table(title=str(args.run_dir))
    columns = ("method", "seed", "cell", "state", "images/s", "attempts", "last attempt", "detail")
    for column in columns:
        table.add_column(column, justify="right" if column == "images/s" else "left")
    for s, speed in zip(states, speeds, strict=True):
        seed = "shared" if s.seed is None else str(s.seed)
        state = f"[{STATE_STYLES[s.state]}]{s.state}[/]"
        attempts, last = str(s.attempts), s.last_outcome or "-"
        table.add_row(s.method, seed, s.cell, state, speed, attempts, last, s.detail)
    console = Console(width=max(120, Console().width))
    console.print(table)
    counts = Counter(s.state for s in states)
    console.print(", ".join(f"{counts[name]} {name}" for name in STATE_STYLES if counts[name]))
    return 0
