"""The backbone interface: a pretrained feature extractor plus what its inputs must look like."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lpft.registry import BACKBONE_SOURCES


@dataclass(frozen=True)
class InputSpec:
    """How images must be prepared for a backbone (after any augmentation)."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


class Backbone(nn.Module):
    """A network without its classification head.

    ``forward(x)`` returns penultimate features of shape (N, feature_dim). ``blocks()`` names the
    stages whose outputs the distortion analysis compares, in input-to-output order.
    """

    feature_dim: int
    input_spec: InputSpec

    def blocks(self) -> dict[str, nn.Module]:
        raise NotImplementedError


class Classifier(nn.Module):
    """Backbone followed by a linear head: what fine-tuning trains."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def set_training_mode(model: nn.Module, batchnorm: str) -> None:
    """Training mode for fine-tuning: ``"train"`` as usual, ``"eval"`` the whole network in
    eval mode (BatchNorm statistics frozen, dropout off), as the official LP-FT code does."""
    model.train(batchnorm == "train")


def _accept_any_name(name: str) -> None:
    """Names of sources such as ``file:`` are only checked when the backbone is built."""


@dataclass(frozen=True)
class BackboneSource:
    """How to build the backbone of a ``source:name`` spec, and how to check ``name`` early
    (during configuration validation, before any work)."""

    build: Callable[[str], Backbone]
    check: Callable[[str], None] = _accept_any_name


def register_backbone_source(
    source: str, check: Callable[[str], None] = _accept_any_name
) -> Callable[[Callable[[str], Backbone]], Callable[[str], Backbone]]:
    """Register ``build(name) -> Backbone`` as the source ``source`` of model specs."""

    def decorator(build: Callable[[str], Backbone]) -> Callable[[str], Backbone]:
        BACKBONE_SOURCES.register(source)(BackboneSource(build, check))
        return build

    return decorator
