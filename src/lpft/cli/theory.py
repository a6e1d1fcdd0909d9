"""``lpft theory``: the two-layer linear simulator of Section 3 (LP vs FT vs LP-FT)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lpft.theory import (
    SWEEPS,
    FlowConfig,
    SettingConfig,
    TheoryConfig,
    TheoryReport,
    report_to_dict,
    run_theory,
    write_outputs,
)
from lpft.theory.setting import HEAD_INITS

DEFAULT_OUT = Path("runs/theory")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    defaults = SettingConfig()
    p = subparsers.add_parser(
        "theory",
        help="simulate LP, FT and LP-FT on a two-layer linear network (paper, Section 3)",
        description="Simulate LP, FT and LP-FT in the overparameterized two-layer linear setting, "
        "compare FT's OOD loss with the Theorem 3.1 bound, run sweeps and write plots + JSON.",
    )
    p.add_argument(
        "--d", type=int, default=defaults.d, help="input dimension (default: %(default)s)"
    )
    p.add_argument(
        "--k", type=int, default=defaults.k, help="feature dimension (default: %(default)s)"
    )
    p.add_argument(
        "--n",
        type=int,
        default=defaults.n,
        help="number of ID examples, k < n < d (default: %(default)s)",
    )
    p.add_argument(
        "--id-dim",
        type=int,
        default=None,
        help="confine ID inputs to a random subspace of this dimension (default: all of R^d)",
    )
    p.add_argument(
        "--eps",
        type=float,
        default=defaults.eps,
        help="feature error ||B0 - U B*||_2, 0 <= eps < 1 (default: %(default)s)",
    )
    p.add_argument(
        "--head-init",
        choices=HEAD_INITS,
        default=defaults.head_init,
        help="FT head initialisation (default: %(default)s)",
    )
    p.add_argument(
        "--init-scale",
        type=float,
        default=defaults.init_scale,
        help="norm of the random FT head (default: %(default)s)",
    )
    p.add_argument(
        "--t-max",
        type=float,
        default=FlowConfig().t_max,
        help="end of the gradient flow (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)"
    )
    p.add_argument(
        "--sweeps",
        nargs="*",
        choices=SWEEPS,
        default=list(SWEEPS),
        help="sweeps to run; give none to skip them (default: all)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder for plots and theory.json (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON data instead of the table")
    p.set_defaults(handler=run)
    return p


def config_from_args(args: argparse.Namespace) -> TheoryConfig:
    """The run's configuration from parsed arguments (validated, raising ConfigError)."""
    setting = SettingConfig(
        d=args.d,
        k=args.k,
        n=args.n,
        eps=args.eps,
        id_dim=args.id_dim,
        head_init=args.head_init,
        init_scale=args.init_scale,
        seed=args.seed,
    )
    return TheoryConfig(setting, FlowConfig(t_max=args.t_max), tuple(args.sweeps)).validate()


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    report = run_theory(config_from_args(args))
    paths = write_outputs(report, args.out)
    if args.json:
        print(json.dumps(report_to_dict(report), indent=2))
        return 0
    console = Console()
    console.print(summary_table(report))
    console.print(_bound_line(report))
    console.print(f"wrote {len(paths)} files to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def summary_table(report: TheoryReport) -> Table:
    """Method, final ID loss, final OOD loss and the Thm 3.1 lower bound on the OOD loss."""
    table = Table(title="two-layer linear network: final losses")
    for column in ("method", "ID loss", "OOD loss", "Thm 3.1 bound"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in report.table_rows():
        bound = "-" if row["thm31_bound"] is None else f"{row['thm31_bound']:.3e}"
        table.add_row(row["method"], f"{row['id_loss']:.3e}", f"{row['ood_loss']:.3e}", bound)
    return table


def _bound_line(report: TheoryReport) -> str:
    bound = report.ft_bound
    return (
        f"Thm 3.1 (FT): cos theta_max = {bound.cos_theta_max:.3f}, "
        f"head misalignment = {bound.head_misalignment:.3f}, eps = {bound.feature_error:.3g}\n"
        f"FT integration error estimate: {report.ft.state_error:.1e}"
    )
