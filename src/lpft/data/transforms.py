"""Image pipelines: the benchmark's augmentation policy at the backbone's input size.

Sizes, interpolation, crop fraction and normalisation come from the backbone's ``InputSpec``,
which each model source fills from its own library. Natural-image backbones (``crop_pct`` set)
are evaluated on a short-side resize and a centre crop, never a squashing resize.

A random training policy is defined once, as the batched pipeline runs it: each image stored as
uint8 pixels before any random step (``pixel_transform``), one crop box and flip drawn for it
(``CropFlip``), the box resized with ``roi_align`` and the pixels normalised. Runs do this on
whole batches (``lpft.training.resident``); ``build_transform`` applies the same operations to
one image, for datasets used on their own, with the same inputs up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.ops import roi_align
from torchvision.transforms import v2

from lpft.errors import ConfigError
from lpft.models.backbone import InputSpec

# Eval-time resize factor for crop-based policies when the backbone names none (256 -> 224).
CROP_RATIO = 0.875


def _interpolation(spec: InputSpec) -> v2.InterpolationMode:
    return v2.InterpolationMode(spec.interpolation)


def _to_pixels(spec: InputSpec) -> list[Callable]:
    return [v2.Grayscale(1) if spec.channels == 1 else v2.RGB(), v2.ToImage()]


def _to_tensor(spec: InputSpec) -> list[Callable]:
    return [
        *_to_pixels(spec),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(spec.mean, spec.std),
    ]


def _resize_only(spec: InputSpec) -> list[Callable]:
    """Fixed-format inputs are resized whole; natural images keep their aspect ratio."""
    if spec.crop_pct is not None:
        return _resize_center_crop(spec)
    return [v2.Resize((spec.size, spec.size), _interpolation(spec), antialias=True)]


def short_side(spec: InputSpec) -> int:
    return round(spec.size / (spec.crop_pct or CROP_RATIO))


def _resize_center_crop(spec: InputSpec) -> list[Callable]:
    return [
        v2.Resize(short_side(spec), _interpolation(spec), antialias=True),
        v2.CenterCrop(spec.size),
    ]


class ShrinkShortSide:
    """Resizes an image whose short side exceeds ``size`` down to it (never enlarges)."""

    def __init__(self, size: int, interpolation: v2.InterpolationMode) -> None:
        self.resize = v2.Resize(size, interpolation, antialias=True)
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        return self.resize(image) if min(image.size) > self.size else image

    def __repr__(self) -> str:
        return f"ShrinkShortSide(size={self.size}, interpolation={self.resize.interpolation})"


@dataclass(frozen=True)
class CropFlip:
    """A random training policy as one crop box and one flip per image, drawn from a generator
    in exactly the order and way torchvision's transforms draw them from the global RNG."""

    kind: str  # "resized": RandomResizedCrop on the source image; "fixed": RandomCrop(size)
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def draw(self, generator: torch.Generator, height: int, width: int) -> tuple[int, ...]:
        """(top, left, crop height, crop width, flip) on a ``height`` x ``width`` image."""
        if self.kind == "resized":
            top, left, h, w = self._resized_box(generator, height, width)
        else:
            top, left, h, w = self._fixed_box(generator, height, width)
        flip = int(torch.rand(1, generator=generator) < 0.5)
        return top, left, h, w, flip

    def box(
        self, generator: torch.Generator, stored: tuple[int, int], source: tuple[int, int]
    ) -> tuple[float, ...]:
        """(x1, y1, x2, y2, flip) in the stored image's pixels (``stored`` and ``source`` are
        (height, width)): a resized crop is drawn on the source image, as torchvision draws it
        there, and scaled to the stored one; a fixed crop is drawn on the stored image."""
        height, width = stored
        if self.kind == "resized":
            top, left, h, w, flip = self.draw(generator, *source)
            y, x = height / source[0], width / source[1]
        else:
            top, left, h, w, flip = self.draw(generator, height, width)
            y = x = 1.0
        return left * x, top * y, (left + w) * x, (top + h) * y, float(flip)

    def _resized_box(self, generator: torch.Generator, height: int, width: int) -> tuple:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(*self.scale, generator=generator).item()
            aspect = math.exp(torch.empty(1).uniform_(*log_ratio, generator=generator).item())
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, round(width / min(self.ratio))
        elif in_ratio > max(self.ratio):
            w, h = round(height * max(self.ratio)), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def _fixed_box(self, generator: torch.Generator, height: int, width: int) -> tuple:
        top = left = 0
        if height > self.size:
            top = int(torch.randint(0, height - self.size + 1, (), generator=generator))
        if width > self.size:
            left = int(torch.randint(0, width - self.size + 1, (), generator=generator))
        return top, left, self.size, self.size


# policy -> the steps an evaluation image goes through; see PAPER.md "Augmentation". The
# training side of a random policy is its ``crop_flip``.
EVAL_STEPS: dict[str, Callable[[InputSpec], list[Callable]]] = {
    "none": _resize_only,
    "rrc_flip": _resize_center_crop,
    "resize_crop_flip": _resize_center_crop,
}
POLICIES = tuple(EVAL_STEPS)

# Policies whose training transform draws no random numbers (a dataset can be pre-transformed).
DETERMINISTIC_POLICIES = frozenset({"none"})


def crop_flip(policy: str, spec: InputSpec) -> CropFlip | None:
    """The per-image random draws of a training policy (None: it draws nothing)."""
    if policy not in EVAL_STEPS:
        raise ConfigError(f"unknown augmentation policy '{policy}' (valid: {', '.join(POLICIES)})")
    if policy == "rrc_flip":
        return CropFlip("resized", spec.size)
    if policy == "resize_crop_flip":
        return CropFlip("fixed", spec.size)
    return None


def pixel_transform(policy: str, spec: InputSpec, train: bool) -> v2.Compose:
    """What a split is stored as, once: uint8 (C, H, W) pixels before any random step.

    Deterministic pipelines keep every geometric step (the stored image is the network's input
    before float conversion); a random training policy keeps its deterministic resize (for
    random resized crops, the image shrunk to the eval short side, as FFCV stores images)."""
    crop = crop_flip(policy, spec) if train else None
    if crop is None:
        steps = EVAL_STEPS[policy](spec)
    elif crop.kind == "resized":
        steps = [ShrinkShortSide(short_side(spec), _interpolation(spec))]
    else:
        steps = [v2.Resize(short_side(spec), _interpolation(spec), antialias=True)]
    return v2.Compose([*steps, *_to_pixels(spec)])


def build_transform(policy: str, spec: InputSpec, train: bool) -> v2.Compose:
    """One image (PIL) -> the network's input. A random training policy draws its crop and flip
    from the global RNG (seeded per image by ``TransformedDataset``)."""
    crop = crop_flip(policy, spec) if train else None
    if crop is None:
        return v2.Compose([*EVAL_STEPS[policy](spec), *_to_tensor(spec)])
    return v2.Compose(
        [CropResizeFlip(pixel_transform(policy, spec, train=True), crop), NormalisePixels(spec)]
    )


class CropResizeFlip:
    """A random training policy on one image, as ``crop_resize_flip`` does it on a batch: the
    stored pixels, one box and flip drawn from the global RNG, float pixels in 0-255."""

    def __init__(self, pixels: v2.Compose, crop: CropFlip) -> None:
        self.pixels = pixels
        self.crop = crop

    def __call__(self, image: Image.Image) -> torch.Tensor:
        stored = self.pixels(image).as_subclass(torch.Tensor)
        box = self.crop.box(torch.default_generator, tuple(stored.shape[1:]), image.size[::-1])
        return crop_resize_flip(stored[None], torch.tensor([box]), self.crop.size)[0]

    def __repr__(self) -> str:
        return f"CropResizeFlip(pixels={self.pixels!r}, crop={self.crop!r}, resize=roi_align)"


class NormalisePixels:
    """Float or uint8 pixels in 0-255 -> the network's input (``normalise_pixels``)."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return normalise_pixels(pixels, self.mean, self.std)

    def __repr__(self) -> str:
        return f"NormalisePixels(mean={self.spec.mean}, std={self.spec.std})"


def crop_resize_flip(pixels: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box resized to ``size`` x ``size`` (bilinear, averaged over the box's
    footprint), mirrored where ``boxes[:, 4]`` is 1; float pixels in 0-255.

    An integer box as large as the output copies its pixels exactly (a plain crop)."""
    batch_index = torch.arange(len(pixels), device=pixels.device, dtype=torch.float32)
    rois = torch.cat([batch_index[:, None], boxes[:, :4]], dim=1)
    out = roi_align(pixels.float(), rois, (size, size), 1.0, sampling_ratio=-1, aligned=True)
    flip = boxes[:, 4].bool()[:, None, None, None]
    return torch.where(flip, out.flip(-1), out)


def normalise_pixels(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (or float 0-255) pixels -> the network's input: the same operations, in the same
    order, as ``ToDtype(scale=True)`` and ``Normalize`` (bitwise equal on uint8 input);
    ``mean`` and ``std`` shaped (C, 1, 1) on the pixels' device."""
    return pixels.to(torch.float32).mul_(1.0 / 255).sub(mean).div_(std)
