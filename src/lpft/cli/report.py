"""``lpft report``: paper-style tables and figures from one or more run directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from lpft.errors import LpftError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write report.md / report.html and figures",
        description="Summarise run directories written by `lpft run`: the accuracy table "
        "(mean ± CI over seeds), ID vs OOD scatter, learning-rate sweeps and feature "
        "distortion, as report.md, a self-contained report.html and PNG figures. Several run "
        "directories are merged into one report.",
    )
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directory")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output directory (default: RUN_DIR when there is one; required for several)",
    )
    p.set_defaults(handler=run)


def output_directory(run_dirs: list[Path], out: Path | None) -> Path:
    if out is not None:
        return out
    if len(run_dirs) == 1:
        return run_dirs[0]
    raise LpftError("several RUN_DIRs given: choose where the merged report goes with --out DIR")


def run(args: argparse.Namespace) -> int:
    from lpft.analysis.report import FIGURE_DIR, write_report

    out = output_directory(args.run_dirs, args.out)
    written = write_report(args.run_dirs, out)
    figures = [path for path in written if path.suffix == ".png"]
    for path in written:
        if path.suffix != ".png":
            print(f"wrote {path}")
    print(f"wrote {len(figures)} figure(s) to {out / FIGURE_DIR}")
    return 0
