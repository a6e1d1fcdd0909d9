"""Image pipelines: the benchmark's augmentation policy at the backbone's input size.

Sizes, interpolation, crop fraction and normalisation come from the backbone's ``InputSpec``,
which each model source fills from its own library. Natural-image backbones (``crop_pct`` set)
are evaluated on a short-side resize and a centre crop, never a squashing resize.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from lpft.errors import ConfigError
from lpft.models.backbone import InputSpec

# Eval-time resize factor for crop-based policies when the backbone names none (256 -> 224).
CROP_RATIO = 0.875


def _interpolation(spec: InputSpec) -> v2.InterpolationMode:
    return v2.InterpolationMode(spec.interpolation)


def _to_tensor(spec: InputSpec) -> list[Callable]:
    return [
        v2.Grayscale(1) if spec.channels == 1 else v2.RGB(),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(spec.mean, spec.std),
    ]


def _resize_only(spec: InputSpec) -> list[Callable]:
    """Fixed-format inputs are resized whole; natural images keep their aspect ratio."""
    if spec.crop_pct is not None:
        return _resize_center_crop(spec)
    return [v2.Resize((spec.size, spec.size), _interpolation(spec), antialias=True)]


def _short_side(spec: InputSpec) -> int:
    return round(spec.size / (spec.crop_pct or CROP_RATIO))


def _resize_center_crop(spec: InputSpec) -> list[Callable]:
    return [
        v2.Resize(_short_side(spec), _interpolation(spec), antialias=True),
        v2.CenterCrop(spec.size),
    ]


def _random_resized_crop_flip(spec: InputSpec) -> list[Callable]:
    return [
        v2.RandomResizedCrop(spec.size, interpolation=_interpolation(spec), antialias=True),
        v2.RandomHorizontalFlip(),
    ]


def _resize_random_crop_flip(spec: InputSpec) -> list[Callable]:
    return [
        v2.Resize(_short_side(spec), _interpolation(spec), antialias=True),
        v2.RandomCrop(spec.size),
        v2.RandomHorizontalFlip(),
    ]


# policy -> (train-time steps, eval-time steps); see PAPER.md "Augmentation".
POLICIES: dict[str, tuple[Callable[[InputSpec], list], Callable[[InputSpec], list]]] = {
    "none": (_resize_only, _resize_only),
    "rrc_flip": (_random_resized_crop_flip, _resize_center_crop),
    "resize_crop_flip": (_resize_random_crop_flip, _resize_center_crop),
}


# Policies whose training transform draws no random numbers (a dataset can be pre-transformed).
DETERMINISTIC_POLICIES = frozenset({"none"})


def build_transform(policy: str, spec: InputSpec, train: bool) -> v2.Compose:
    if policy not in POLICIES:
        raise ConfigError(f"unknown augmentation policy '{policy}' (valid: {', '.join(POLICIES)})")
    train_steps, eval_steps = POLICIES[policy]
    steps = train_steps(spec) if train else eval_steps(spec)
    return v2.Compose([*steps, *_to_tensor(spec)])
