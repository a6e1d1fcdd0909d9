"""``lpft run``: LP, FT and LP-FT on a benchmark, with the paper's protocol."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lpft.analysis.tables import (
    BEST,
    ORACLE,
    caption,
    columns,
    contrast_caption,
    contrasts,
    format_difference,
    formatted_rows,
    has_oracle,
    oracle_caption,
    warnings,
)
from lpft.config import RunConfig, deep_merge, load_yaml_config, parse_set_option, resolve_config
from lpft.errors import ConfigError
from lpft.run.rundir import RESUMABLE_DIFFERENCES, first_difference


def _float_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _method_lrs(text: str) -> tuple[str, list[float]]:
    """``METHOD=LR,LR,...``, or a bare ``LR,LR,...`` meaning the method ``ft``."""
    method, sep, values = text.partition("=")
    if not sep:
        method, values = BARE_LRS_METHOD, text
    return method.strip(), _float_list(values)


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that say what to transfer, where and how (shared with ``lpft doctor``)."""
    p.add_argument("--config", type=Path, help="YAML file with any RunConfig keys")
    p.add_argument("--benchmark", help="benchmark name (default: digits-shift)")
    p.add_argument("--model", help="backbone spec SOURCE:NAME (default: builtin:glyph-resnet)")
    p.add_argument("--epochs", type=int, help="epochs for every fine-tuning method")
    p.add_argument(
        "--lrs",
        type=_method_lrs,
        action="append",
        default=[],
        metavar="[METHOD=]LR,...",
        help="learning-rate grid of one method, e.g. ft=1e-3,3e-3 or lpft=1e-5,3e-5 "
        "(repeatable; a bare list sets ft)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--precision", choices=["fp32", "bf16", "fp16"], help="autocast dtype (fp16: loss scaling)"
    )
    p.add_argument("--data-root", type=Path, help="dataset root for on-disk benchmarks")
    p.add_argument("--num-workers", type=int, help="data-loading worker processes")
    p.add_argument(
        "--skip-bad-images",
        action="store_true",
        default=None,
        help="skip unreadable images (counted in results.json) instead of failing",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, e.g. methods.ft.batchnorm=eval (repeatable)",
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="fine-tune and linear-probe a backbone; print ID and OOD accuracy",
        description="Run LP / FT / LP-FT with ID-validation selection over seeds. "
        "Rerunning with the same --out resumes an interrupted run.",
    )
    add_input_arguments(p)
    p.add_argument("--methods", help="comma-separated, e.g. lp,ft,lpft or ft@bn-eval variants")
    p.add_argument("--seeds", type=int, help="number of seeds (default 3)")
    p.add_argument(
        "--channels-last",
        choices=["auto", "on", "off"],
        help="channels-last layout for convolutional backbones (auto: on GPUs)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the fine-tuned backbones",
    )
    p.add_argument("--out", type=Path, help="run directory (reused to resume)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke profile")
    p.add_argument(
        "--oracle",
        action="store_true",
        default=None,
        help="also report rows selected on OOD validation (benchmarks that have it), apart",
    )
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--launcher",
        choices=["local", "slurm", "ray"],
        help="run every cell as its own job (settings: the config's launcher section)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train each cell with N data-parallel processes (restarts itself under torchrun)",
    )
    p.add_argument("--log", help="experiment trackers, e.g. tensorboard,mlflow")
    p.set_defaults(handler=run)


TABLE_WIDTH = 110
BARE_LRS_METHOD = "ft"

# Flags whose destination name is the config key they set.
CONFIG_FLAGS = (
    "benchmark",
    "model",
    "methods",
    "seeds",
    "device",
    "precision",
    "channels_last",
    "compile",
    "out",
    "data_root",
    "num_workers",
    "skip_bad_images",
    "oracle",
)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags' top-level keys (``--set`` is layered separately, after them)."""
    overrides: dict[str, Any] = {}
    for key in CONFIG_FLAGS:
        value = getattr(args, key)
        if value is not None:
            overrides[key] = str(value) if isinstance(value, Path) else value
    if args.no_report:
        overrides["report"] = False
    if args.resume is not None:
        overrides["out"] = str(args.resume)
    if args.launcher is not None:
        overrides = deep_merge(overrides, {"launcher": {"name": args.launcher}})
    if args.log is not None:
        overrides = deep_merge(overrides, {"tracking": {"log": args.log}})
    return overrides


def set_layers(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` values: (top-level keys, per-method options). ``methods.M.KEY`` settings are
    options of method M (never a new method list), refused if M does not run."""
    layer: dict[str, Any] = {}
    for item in args.set:
        layer = deep_merge(layer, parse_set_option(item))
    method_options = layer.pop("methods") if isinstance(layer.get("methods"), dict) else {}
    return layer, method_options


def lrs_from_args(args: argparse.Namespace) -> dict[str, list[float]]:
    grids: dict[str, list[float]] = {}
    for method, values in args.lrs:
        if method in grids:
            raise ConfigError(f"--lrs given twice for method '{method}'")
        grids[method] = values
    return grids


def resumed_config(args: argparse.Namespace) -> dict[str, Any] | None:
    """The saved configuration of the run ``--resume`` names (the base of the layers)."""
    if args.resume is None:
        return None
    saved = args.resume / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"--resume {args.resume}: no config.yaml there (not an lpft run)")
    return load_yaml_config(saved)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Every layer in the documented order (``resolve_config``) from the parsed flags.

    A resumed run accepts the command that started it (its flags resolve to the saved
    configuration) as well as the saved configuration with flags on top (``--resume DIR`` alone,
    or with a setting to change, which the run directory then accepts or refuses)."""
    top_settings, method_options = set_layers(args)
    layers = {
        "yaml_path": args.config,
        "quick": args.quick,
        "overrides": deep_merge(overrides_from_args(args), top_settings),
        "every_method": {"epochs": args.epochs} if args.epochs is not None else {},
        "method_options": method_options,
        "lrs": lrs_from_args(args),
    }
    saved = resumed_config(args)
    if saved is None:
        return resolve_config(**layers)
    try:
        fresh = resolve_config(**layers)
        if first_difference(saved, fresh.to_plain(), RESUMABLE_DIFFERENCES) is None:
            return fresh
    except ConfigError:
        pass
    return resolve_config(**layers, base=saved)


def run(args: argparse.Namespace) -> int:
    from lpft.run.launchers import CellsFailed, launch
    from lpft.run.rundir import default_out_dir
    from lpft.run.runner import Runner
    from lpft.training.distributed import distributed_session, launched_by_torchrun

    if args.nproc is not None and not launched_by_torchrun():
        return relaunch_with_torchrun(args.nproc, args.argv)
    config = config_from_args(args)
    failure = None
    with distributed_session(config.device) as world:
        if config.launcher.name is not None:
            if world.distributed:
                raise ConfigError("--launcher runs cells as separate jobs; not under torchrun")
            try:
                results = launch(config)
            except CellsFailed as failed:
                results, failure = failed.results, failed
        else:
            results = Runner(config, quiet=args.quiet).run()
    if world.main:
        print_table(results, Console(width=max(TABLE_WIDTH, Console().width)))
        out = Path(config.out) if config.out else default_out_dir(config)
        print(f"results: {out / 'results.json'}", file=sys.stderr)
    if failure is not None:
        print(f"lpft: error: {failure}", file=sys.stderr)
        return 1
    return 0


def relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """``lpft run --nproc N ...`` = ``torchrun --standalone --nproc-per-node N -m lpft run ...``,
    run in this process so that a failed process ends the command with its own message and
    exit code, not with torchrun's report and traceback."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: expected at least 1 process")
    logging.getLogger("torch.distributed.run").setLevel(logging.ERROR)  # its OMP banner
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # failure report
    options = ["--standalone", "--nproc-per-node", str(nproc), "-m", "lpft"]
    try:
        torchrun(get_args_parser().parse_args([*options, *without_nproc(argv)]))
    except ChildFailedError as failed:
        _rank, failure = failed.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0


def without_nproc(argv: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            kept.append(item)
    return kept


def print_table(results: dict[str, Any], console: Console) -> None:
    """The accuracy table, the paired contrasts, oracle rows apart, then any warnings."""
    title = f"{results['benchmark']['name']} · {results['model']}"
    console.print(accuracy_table(results, title, caption(results), "summary"))
    found = contrasts(results)
    if found:
        table = Table(title="paired contrasts (points)", caption=contrast_caption(results))
        table.add_column("contrast", style="bold")
        cols = columns(results)
        for col in cols:
            table.add_column(col.title, justify="right")
        for contrast in found:
            cells = [
                f"[bold green]{text}[/]" if contrast.resolved(col.key) else text
                for col in cols
                for text in [format_difference(contrast.values[col.key])]
            ]
            table.add_row(contrast.label, *cells)
        console.print(table)
    if has_oracle(results):
        console.print(
            accuracy_table(
                results, f"ORACLE (selected on OOD val) · {title}", oracle_caption(results), ORACLE
            )
        )
    for note in warnings(results):
        console.print(f"[yellow]warning: {note}[/]")


def accuracy_table(results: dict[str, Any], title: str, text: str, summary_key: str) -> Table:
    table = Table(title=title, caption=text)
    table.add_column("method", style="bold")
    table.add_column("setting")
    for col in columns(results):
        table.add_column(col.title, justify="right")
    for method, notes, cells in formatted_rows(
        results, terminal_emphasis, lambda n: f", [red]{n} failed[/]", summary_key
    ):
        table.add_row(method, notes, *cells)
    return table


def terminal_emphasis(text: str, mark: str) -> str:
    return f"[bold green]{text}[/]" if mark == BEST else f"[italic]{text}[/]"
