"""Entry point of the ``lpft`` command.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``, which registers the
subparser and sets ``handler`` to a function of the parsed arguments returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lpft import __version__
from lpft.errors import ConfigError, DataError, LpftError

SUBCOMMANDS = (
    "run",
    "doctor",
    "status",
    "collect",
    "data",
    "models",
    "pretrain",
    "theory",
    "report",
)
USAGE_ERROR = 2
# Errors every torchrun process meets alike (the same config and data): only rank 0 prints them.
SAME_ON_EVERY_RANK = (ConfigError, DataError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lpft",
        description="Transfer pretrained models and measure in- and out-of-distribution accuracy.",
    )
    parser.add_argument("--version", action="version", version=f"lpft {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"lpft.cli.{name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if not args_list:
        args_list = ["run"]
    parser = build_parser()
    args = parser.parse_args(args_list)
    args.argv = args_list
    if args.command is None:
        parser.print_help()
        return USAGE_ERROR
    try:
        return int(args.handler(args) or 0)
    except LpftError as exc:
        if os.environ.get("RANK", "0") == "0" or not isinstance(exc, SAME_ON_EVERY_RANK):
            print(f"lpft: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("lpft: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
