"""Building backbones from model specs (``source:name[?key=value&...]``, parsed in
``lpft.registry``), and the registry of lpft's own architectures that checkpoints name."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lpft.models.backbone import Backbone
from lpft.registry import (
    BACKBONE_SOURCES,
    RANDOM_WEIGHTS,
    ModelSpec,
    Registry,
    check_model_spec,
    parse_model_spec,
    split_model_spec,
)

# Seed of the random weights of ``weights=random`` specs: the same spec is the same network.
RANDOM_WEIGHTS_SEED = 0

# lpft's own architectures, by the name their checkpoints record (constructor keyword arguments).
ARCHITECTURES: Registry[Callable[..., Backbone]] = Registry("architecture")


def create_backbone(spec: str | ModelSpec) -> Backbone:
    """Build a backbone from ``source:name``, e.g. ``builtin:glyph-resnet`` or
    ``torchvision:resnet50``; ``?weights=random`` skips the pretrained weights."""
    parsed = parse_model_spec(spec) if isinstance(spec, str) else spec
    build = BACKBONE_SOURCES.get(parsed.source).build
    if not parsed.random_weights:
        return build(parsed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return build(parsed)


def random_variant(spec: str) -> ModelSpec:
    """``spec`` with ``weights=random``: the architecture that a checkpoint's weights fill."""
    return check_model_spec(split_model_spec(spec).with_options(weights=RANDOM_WEIGHTS))
