"""Backbones: ``create_backbone("source:name")`` and the registries behind it.

Add an architecture with ``@ARCHITECTURES.register(name)`` (a constructor taking keyword
arguments) and a new spec source with ``@register_backbone_source(source)`` on a function of the
part after the colon returning a ``Backbone``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from lpft.errors import CheckpointError
from lpft.models.backbone import (
    Backbone,
    BackboneSource,
    Classifier,
    InputSpec,
    register_backbone_source,
    set_training_mode,
)
from lpft.models.checkpoint import (
    load_state_dict_strictly,
    read_checkpoint,
    save_backbone_checkpoint,
)
from lpft.models.glyph_resnet import GlyphResNet
from lpft.registry import BACKBONE_SOURCES, Registry, parse_model_spec

__all__ = [
    "ARCHITECTURES",
    "BACKBONE_SOURCES",
    "BUILTIN_BACKBONES",
    "Backbone",
    "BackboneSource",
    "Classifier",
    "InputSpec",
    "create_backbone",
    "load_backbone_file",
    "parse_model_spec",
    "register_backbone_source",
    "save_backbone_checkpoint",
    "set_training_mode",
    "shipped_checkpoint_path",
]

ARCHITECTURES: Registry[Callable[..., Backbone]] = Registry("architecture")
BUILTIN_BACKBONES: Registry[Callable[[], Backbone]] = Registry("builtin backbone")

ARCHITECTURES.register("glyph-resnet")(GlyphResNet)


def shipped_checkpoint_path(name: str) -> Path:
    return Path(str(resources.files("lpft.models") / "checkpoints" / f"{name}.pt"))


def build_architecture(arch: str, arch_kwargs: dict[str, Any]) -> Backbone:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in arch_kwargs.items()}
    return ARCHITECTURES.get(arch)(**kwargs)


def load_backbone_file(path: Path) -> Backbone:
    payload = read_checkpoint(path)
    try:
        backbone = build_architecture(payload["arch"], payload.get("arch_kwargs", {}))
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {path}: bad arch_kwargs ({exc})") from None
    load_state_dict_strictly(backbone, payload["state_dict"], f"checkpoint {path}")
    return backbone


def _shipped(name: str) -> Callable[[], Backbone]:
    def load() -> Backbone:
        path = shipped_checkpoint_path(name)
        if not path.is_file():
            raise CheckpointError(
                f"shipped checkpoint {path} is missing from the installed package; "
                f"recreate it with `lpft pretrain --recipe {name}`"
            )
        return load_backbone_file(path)

    return load


def _scratch() -> Backbone:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return GlyphResNet()


BUILTIN_BACKBONES.register("glyph-resnet")(_shipped("glyph-resnet"))
BUILTIN_BACKBONES.register("glyph-resnet-letters")(_shipped("glyph-resnet-letters"))
BUILTIN_BACKBONES.register("glyph-resnet-scratch")(_scratch)


def _check_builtin_name(name: str) -> None:
    BUILTIN_BACKBONES.get(name)


@register_backbone_source("builtin", check=_check_builtin_name)
def _builtin(name: str) -> Backbone:
    return BUILTIN_BACKBONES.get(name)()


@register_backbone_source("file")
def _file(path: str) -> Backbone:
    return load_backbone_file(Path(path).expanduser())


def create_backbone(spec: str) -> Backbone:
    """Build a pretrained backbone from ``source:name``, e.g. ``builtin:glyph-resnet``."""
    source, name = parse_model_spec(spec)
    return BACKBONE_SOURCES.get(source).build(name)
