"""``lpft data check``: where a benchmark's data is expected and whether it is there."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lpft.errors import ConfigError

DATA_PROBLEM = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="check benchmark data on disk")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="list every split of a benchmark: found or missing, image and class counts",
        description="List every split of a benchmark as found or missing, with image and class "
        "counts, and for anything missing the exact path expected and how to obtain it. Exit "
        "code 2 when something is missing or has the wrong layout.",
    )
    check.add_argument("name", nargs="?", help="benchmark name, e.g. living17")
    check.add_argument("--data-root", type=Path, help="directory holding the datasets")
    check.add_argument(
        "--config", type=Path, help="take benchmark, benchmark_options and data_root from a YAML"
    )
    check.set_defaults(handler=run_check)


def _from_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from lpft.config import load_yaml_config

    return load_yaml_config(path)


def run_check(args: argparse.Namespace) -> int:
    from lpft.data.check import check_benchmark, format_report

    config = _from_config(args.config)
    name = args.name or config.get("benchmark")
    if name is None:
        raise ConfigError("lpft data check: name a benchmark (or pass --config with 'benchmark')")
    data_root = args.data_root or config.get("data_root")
    report = check_benchmark(
        name,
        config.get("benchmark_options") or {},
        Path(data_root).expanduser() if data_root is not None else None,
    )
    print(format_report(report))
    return 0 if report.ok else DATA_PROBLEM
