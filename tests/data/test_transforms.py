"""The input pipeline follows the backbone's InputSpec: crop, not squash, for natural images."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from lpft.data.transforms import build_transform
from lpft.models import InputSpec

NATURAL = InputSpec(
    size=32, channels=3, mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bicubic", crop_pct=0.8
)
GLYPH = InputSpec(size=8, channels=1, mean=(0.25,), std=(0.35,))


def wide_image() -> Image.Image:
    """100 x 40, the outer 20 columns on each side red, the middle green."""
    pixels = np.zeros((40, 100, 3), np.uint8)
    pixels[:, :20, 0] = pixels[:, 80:, 0] = 255
    pixels[:, 20:80, 1] = 255
    return Image.fromarray(pixels)


def test_natural_images_are_resized_on_the_short_side_then_center_cropped() -> None:
    for policy in ("none", "rrc_flip", "resize_crop_flip"):
        out = build_transform(policy, NATURAL, train=False)(wide_image())
        assert out.shape == (3, 32, 32)
        # short side 40 -> 32 / 0.8 = 40, width stays 100; the centre 32 columns are all green
        assert torch.all(out[1] > 0.99) and torch.all(out[0] < 0.01)


def test_natural_eval_transform_uses_the_models_interpolation() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 50, 3), np.uint8))
    out = build_transform("none", NATURAL, train=False)(image)
    for mode, same in (
        (v2.InterpolationMode.BICUBIC, True),
        (v2.InterpolationMode.BILINEAR, False),
    ):
        resized = v2.Compose([v2.Resize(40, mode), v2.CenterCrop(32)])(image)
        expected = torch.tensor(np.array(resized)).permute(2, 0, 1).float() / 255
        assert torch.allclose(out, expected, atol=1e-6) == same


def test_fixed_format_glyphs_keep_the_whole_image_resize() -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (8, 16), np.uint8))
    out = build_transform("none", GLYPH, train=False)(image)
    squashed = np.asarray(image.resize((8, 8), Image.Resampling.BILINEAR)).astype(np.float32)
    assert out.shape == (1, 8, 8)
    assert torch.allclose(out[0], (torch.from_numpy(squashed) / 255 - 0.25) / 0.35, atol=0.05)
