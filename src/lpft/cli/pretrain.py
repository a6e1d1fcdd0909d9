"""``lpft pretrain``: recreate a shipped backbone (or a variant) from its recipe."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lpft.errors import ConfigError
from lpft.pretrain.recipes import RECIPES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a glyph backbone from offline data and write its card",
        description="Deterministic from the recipe's seed. Writes OUT/<recipe>.pt and "
        "OUT/<recipe>.json (recipe, data, sha256, LP accuracy on every digits-shift split).",
    )
    p.add_argument("--recipe", default="glyph-resnet", help=f"one of {', '.join(RECIPES.names())}")
    p.add_argument("--out", type=Path, default=Path("runs/pretrain"))
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--letters-per-class", type=int, help="override the recipe's letter count")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from lpft.pretrain.train import pretrain

    recipe = RECIPES.get(args.recipe)
    changes = {
        key: value
        for key, value in {
            "epochs": args.epochs,
            "letters_per_class": args.letters_per_class,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    for key, value in changes.items():
        lowest = 0 if key == "seed" else 1
        if value < lowest:
            raise ConfigError(f"--{key.replace('_', '-')}={value} must be >= {lowest}")
    recipe = recipe.with_changes(**changes)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.quiet,
        transient=True,
    ) as progress:
        card = pretrain(recipe, args.out, progress, quiet=True)
    console.print(json.dumps(card["linear_probe"], indent=2))
    console.print(f"wrote {args.out / card['file']} (sha256 {card['sha256'][:12]}…) and its card")
    return 0
