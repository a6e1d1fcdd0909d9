"""``lpft models [SOURCE]``: the model sources, or what one source offers."""

from __future__ import annotations

import argparse

from lpft.models import BACKBONE_SOURCES

# Listing order: lpft's own backbones first.
FIRST = "builtin"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list model sources and the models each offers",
        description="Without SOURCE: every model source with an example spec. With SOURCE: "
        "the models it offers (torchvision architectures with their weights enums, timm's "
        "pretrained names, open_clip's architecture/tag pairs, ...). Append ?weights=random "
        "to any spec except builtin for random weights.",
    )
    p.add_argument("source", nargs="?", help="builtin, torchvision, timm, openclip, hf or file")
    p.add_argument("--filter", metavar="TEXT", help="only names containing TEXT")
    p.set_defaults(handler=run)


def source_names() -> list[str]:
    names = BACKBONE_SOURCES.names()
    return [FIRST, *sorted(n for n in names if n != FIRST)] if FIRST in names else sorted(names)


def run(args: argparse.Namespace) -> int:
    if args.source is None:
        for name in source_names():
            print(f"{name:12} {BACKBONE_SOURCES.get(name).summary}")
        print("\nlpft models SOURCE [--filter TEXT] lists what a source offers.")
        return 0
    for line in BACKBONE_SOURCES.get(args.source).catalogue(args.filter):
        print(line)
    return 0
