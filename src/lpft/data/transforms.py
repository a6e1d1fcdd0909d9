"""Image pipelines: the benchmark's augmentation policy at the backbone's input size."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from lpft.errors import ConfigError
from lpft.models.backbone import InputSpec

# Eval-time resize factor for crop-based policies (256 -> 224, the ImageNet convention).
CROP_RATIO = 0.875


def _to_tensor(spec: InputSpec) -> list[Callable]:
    return [
        v2.Grayscale(1) if spec.channels == 1 else v2.RGB(),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(spec.mean, spec.std),
    ]


def _resize_only(spec: InputSpec) -> list[Callable]:
    return [v2.Resize((spec.size, spec.size), antialias=True)]


def _resize_center_crop(spec: InputSpec) -> list[Callable]:
    return [v2.Resize(round(spec.size / CROP_RATIO), antialias=True), v2.CenterCrop(spec.size)]


def _random_resized_crop_flip(spec: InputSpec) -> list[Callable]:
    return [v2.RandomResizedCrop(spec.size, antialias=True), v2.RandomHorizontalFlip()]


def _resize_random_crop_flip(spec: InputSpec) -> list[Callable]:
    return [
        v2.Resize(round(spec.size / CROP_RATIO), antialias=True),
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
