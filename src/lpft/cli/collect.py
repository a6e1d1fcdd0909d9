"""``lpft collect RUN``: results.json, the table and the report from a run's cell records."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from lpft.cli.run import TABLE_WIDTH, print_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "collect",
        help="write results.json, the table and the report of a run from its cells",
        description="Gather what cell jobs (lpft run --launcher ...) recorded into one result. "
        "Unfinished cells leave results.json marked partial.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="run directory")
    p.set_defaults(handler=collect)


def collect(args: argparse.Namespace) -> int:
    from lpft.run.jobs import collect as collect_run

    results = collect_run(args.run_dir)
    print_table(results, Console(width=max(TABLE_WIDTH, Console().width)))
    print(f"results ({results['status']}): {args.run_dir / 'results.json'}", file=sys.stderr)
    return 0
