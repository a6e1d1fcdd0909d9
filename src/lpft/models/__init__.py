"""Backbones: ``create_backbone("source:name")`` and the registries behind it.

Sources (``builtin`` here; ``torchvision``, ``timm``, ``openclip``, ``hf`` and ``file`` in
``lpft.models.sources``, one module each) register with ``@register_backbone_source(source,
check=..., catalogue=..., summary=...)`` on a function of a ``ModelSpec`` returning a
``Backbone``. Add an lpft architecture that checkpoints can name with
``@ARCHITECTURES.register(name)`` (a constructor taking keyword arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch

from lpft.errors import CheckpointError
from lpft.models import sources
from lpft.models.backbone import (
    Backbone,
    BackboneSource,
    Classifier,
    InputSpec,
    register_backbone_source,
    set_training_mode,
)
from lpft.models.checkpoint import save_backbone_checkpoint, save_spec_checkpoint
from lpft.models.glyph_resnet import GlyphResNet
from lpft.models.sources.file import load_backbone_file
from lpft.models.spec import ARCHITECTURES, create_backbone
from lpft.registry import BACKBONE_SOURCES, ModelSpec, Registry, parse_model_spec

__all__ = [
    "ARCHITECTURES",
    "BACKBONE_SOURCES",
    "BUILTIN_BACKBONES",
    "Backbone",
    "BackboneSource",
    "Classifier",
    "InputSpec",
    "ModelSpec",
    "create_backbone",
    "load_backbone_file",
    "parse_model_spec",
    "register_backbone_source",
    "save_backbone_checkpoint",
    "save_spec_checkpoint",
    "set_training_mode",
    "shipped_checkpoint_path",
    "sources",
]

BUILTIN_BACKBONES: Registry[Callable[[], Backbone]] = Registry("builtin backbone")

ARCHITECTURES.register("glyph-resnet")(GlyphResNet)


def shipped_checkpoint_path(name: str) -> Path:
    return Path(str(resources.files("lpft.models") / "checkpoints" / f"{name}.pt"))


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


def _check_builtin(spec: ModelSpec) -> None:
    BUILTIN_BACKBONES.get(spec.name)


def _builtin_catalogue(pattern: str | None) -> list[str]:
    return [f"builtin:{n}" for n in BUILTIN_BACKBONES.names() if not pattern or pattern in n]


@register_backbone_source(
    "builtin",
    _check_builtin,
    catalogue=_builtin_catalogue,
    summary="lpft's glyph backbones for the embedded benchmark, e.g. builtin:glyph-resnet",
    options=(),
)
def _builtin(spec: ModelSpec) -> Backbone:
    return BUILTIN_BACKBONES.get(spec.name)()
