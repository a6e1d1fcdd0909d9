"""``lpft doctor``: which transfer method to use, from ID labels and unlabeled target images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lpft.cli.run import TABLE_WIDTH, add_input_arguments, config_from_args

# ``lpft run`` flags the doctor does not take, at the values that leave the config alone.
RUN_ONLY_DEFAULTS = {
    "methods": None,
    "seeds": None,
    "channels_last": None,
    "compile": None,
    "out": None,
    "resume": None,
    "quick": False,
    "oracle": None,
    "no_report": False,
    "launcher": None,
    "log": None,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="recommend lp, lpft, wise-ft or ft from cheap probes and unlabeled target images",
        description="Fit LP, a short FT and LP-FT at the middle of their grids and WiSE-FT "
        "between them; measure how fine-tuning would distort the target's features and "
        "recommend a method. Target and OOD labels are never read.",
    )
    add_input_arguments(p)
    p.add_argument(
        "--target",
        type=Path,
        metavar="DIR",
        help="a folder of unlabeled target images (default: the benchmark's OOD sets' images)",
    )
    p.add_argument(
        "--probe-epochs", type=int, help="epochs of the FT and LP-FT probes (default: half)"
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="also write doctor.json into this run directory and add it to its report",
    )
    p.add_argument("--json", action="store_true", help="print the JSON document only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=doctor, **RUN_ONLY_DEFAULTS)


def doctor(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from lpft.analysis.report import DOCTOR_FILE, RESULTS_FILE, write_report
    from lpft.doctor.diagnose import diagnose
    from lpft.doctor.targets import ImageFiles
    from lpft.errors import ConfigError
    from lpft.io import atomic_write_json

    if args.probe_epochs is not None and args.probe_epochs < 1:
        raise ConfigError(f"--probe-epochs {args.probe_epochs}: expected at least 1")
    config = config_from_args(args)
    targets = {args.target.name or "target": ImageFiles(args.target)} if args.target else None
    with Progress(console=Console(stderr=True), transient=True, disable=args.quiet) as progress:
        document = diagnose(config, progress, targets, args.probe_epochs)
    if args.run_dir is not None:
        atomic_write_json(args.run_dir / DOCTOR_FILE, document)
        if (args.run_dir / RESULTS_FILE).is_file():
            write_report([args.run_dir], args.run_dir)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_diagnosis(document, Console(width=max(TABLE_WIDTH, Console().width)))
    return 0


def print_diagnosis(document: dict[str, Any], console: Console) -> None:
    title = f"lpft doctor · {document['benchmark']} · {document['model']}"
    table = Table(title=title)
    table.add_column("indicator", style="bold")
    table.add_column("value", justify="right")
    table.add_column("ID reference", justify="right")
    table.add_column("reading")
    for item in document["indicators"]:
        reference = item["reference"]
        table.add_row(
            item["name"],
            f"{item['value']:.3f}",
            "" if reference is None else f"{reference:.3f}",
            item["reading"],
        )
    console.print(table)
    console.print(
        f"[bold]recommendation: {document['recommendation']}[/] "
        f"(confidence {document['confidence']:.0%}): {document['reason']}"
    )
    costs = Table(title="full run, estimated from the probes", title_justify="left")
    costs.add_column("method", style="bold")
    for method in document["estimated_cost_seconds"]:
        costs.add_column(method, justify="right")
    seconds = [f"{s:.0f} s" for s in document["estimated_cost_seconds"].values()]
    costs.add_row("cost", *seconds)
    console.print(costs)
    took = document["doctor_seconds"]
    print(f"doctor: {took:.0f} s; no target or OOD label read", file=sys.stderr)
