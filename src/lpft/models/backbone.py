"""The backbone interface: a pretrained feature extractor plus what its inputs must look like."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lpft.errors import ConfigError
from lpft.registry import BACKBONE_SOURCES, ModelSpec

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class InputSpec:
    """How images must be prepared for a backbone (after any augmentation).

    ``crop_pct`` marks a backbone of natural images: at eval time the short side is resized to
    ``size / crop_pct`` and the centre ``size`` x ``size`` crop is kept (aspect ratio preserved).
    ``None`` (the glyph backbones) resizes the whole image to ``size`` x ``size``, which suits
    fixed-format inputs only. ``interpolation`` is the model library's resampling filter.
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float | None = None

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}")
        if self.crop_pct is not None and not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")


class Backbone(nn.Module):
    """A network without its classification head.

    ``forward(x)`` returns penultimate features of shape (N, feature_dim). ``blocks()`` names the
    stages whose outputs the distortion analysis compares, in input-to-output order (surgical
    fine-tuning trains one of them). ``embedding_parameters()`` names the stem's parameters.
    """

    feature_dim: int
    input_spec: InputSpec

    def blocks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    @property
    def architecture(self) -> str:
        """The network's class name, for messages (the library's class for a wrapped model)."""
        return type(self).__name__

    def weights_module(self) -> nn.Module:
        """The module whose state dict a checkpoint of this backbone holds."""
        return self

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a state dict saved outside lpft onto ``weights_module()`` (e.g. drop the
        pretraining classifier); the identity unless a source knows better."""
        return state_dict

    def zeroshot_head(self, class_names: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A (weight, bias) head from class names, for backbones with a text tower; else None."""
        return None

    def has_zeroshot_head(self) -> bool:
        """Whether ``zeroshot_head`` builds a head: answered without computing one."""
        return False

    def embedding_parameters(self) -> list[str]:
        """Names, as ``named_parameters()`` gives them, of the stem or patch embedding (for a
        ViT also its position embedding and class token): what ``freeze-embed`` keeps frozen.
        Every backbone source should override this."""
        raise ConfigError(
            f"backbone {self.architecture} does not name its stem / embedding parameters "
            "(Backbone.embedding_parameters), which freezing the embedding needs"
        )


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


def _accept_any_spec(spec: ModelSpec) -> None:
    """Specs of sources such as ``hf:`` are only fully checked when the backbone is built."""


def _nothing_listed(pattern: str | None) -> list[str]:
    return []


@dataclass(frozen=True)
class BackboneSource:
    """How to build the backbone of a ``source:name`` spec, and how to check the spec early
    (during configuration validation, before any work). ``options`` are the ``?key=value``
    keys the source accepts; ``catalogue(pattern)`` lists what it offers (``lpft models``)."""

    build: Callable[[ModelSpec], Backbone]
    check: Callable[[ModelSpec], None] = _accept_any_spec
    catalogue: Callable[[str | None], list[str]] = _nothing_listed
    summary: str = ""
    options: frozenset[str] = frozenset({"weights"})


def register_backbone_source(
    source: str,
    check: Callable[[ModelSpec], None] = _accept_any_spec,
    *,
    catalogue: Callable[[str | None], list[str]] = _nothing_listed,
    summary: str = "",
    options: tuple[str, ...] = ("weights",),
) -> Callable[[Callable[[ModelSpec], Backbone]], Callable[[ModelSpec], Backbone]]:
    """Register ``build(spec) -> Backbone`` as the source ``source`` of model specs."""

    def decorator(build: Callable[[ModelSpec], Backbone]) -> Callable[[ModelSpec], Backbone]:
        BACKBONE_SOURCES.register(source)(
            BackboneSource(build, check, catalogue, summary, frozenset(options))
        )
        return build

    return decorator
