"""Printed glyphs in the format of scikit-learn's handwritten digits (UCI optdigits).

The UCI digits were 32x32 binary bitmaps reduced to 8x8 by counting the set pixels in each 4x4
block (values 0..16). ``render_glyph`` draws a character from one of the TrueType fonts that ship
with matplotlib, jitters it (affine warp, stroke width, blur, pixel noise, placement), binarises it
at 32x32 and block-counts it the same way, so printed and handwritten digits share one format and
differ only in style. Everything is deterministic given a ``numpy.random.Generator``.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

BITMAP = 32
BLOCK = 4
CANVAS = 128
FONT_SIZE = 72
THRESHOLD = 128

FONT_FAMILIES: dict[str, tuple[str, ...]] = {
    "dejavu-sans": (
        "DejaVuSans.ttf",
        "DejaVuSans-Bold.ttf",
        "DejaVuSans-Oblique.ttf",
        "DejaVuSans-BoldOblique.ttf",
    ),
    "dejavu-sans-mono": (
        "DejaVuSansMono.ttf",
        "DejaVuSansMono-Bold.ttf",
        "DejaVuSansMono-Oblique.ttf",
        "DejaVuSansMono-BoldOblique.ttf",
    ),
    "stix": (
        "STIXGeneral.ttf",
        "STIXGeneralBol.ttf",
        "STIXGeneralItalic.ttf",
        "STIXGeneralBolIta.ttf",
    ),
    "dejavu-serif": (
        "DejaVuSerif.ttf",
        "DejaVuSerif-Bold.ttf",
        "DejaVuSerif-Italic.ttf",
        "DejaVuSerif-BoldItalic.ttf",
    ),
    "computer-modern": ("cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmti10.ttf"),
}

DIGITS = string.digits
LETTERS = string.ascii_uppercase + string.ascii_lowercase


@dataclass(frozen=True)
class Jitter:
    """Ranges of the random style changes applied to each rendered glyph."""

    rotation_deg: float = 12.0
    shear: float = 0.3
    aspect: tuple[float, float] = (0.75, 1.25)
    fill: tuple[float, float] = (0.8, 1.0)
    shift_px: int = 3
    stroke_px: tuple[int, int] = (0, 4)
    blur_px: tuple[float, float] = (0.0, 1.5)
    flip_prob: float = 0.02


STYLES: dict[str, Jitter] = {
    "standard": Jitter(),
    "medium": Jitter(
        rotation_deg=16.0,
        shear=0.38,
        aspect=(0.7, 1.3),
        fill=(0.65, 1.0),
        shift_px=3,
        stroke_px=(0, 5),
        blur_px=(0.0, 1.6),
        flip_prob=0.04,
    ),
    "hard": Jitter(
        rotation_deg=20.0,
        shear=0.45,
        aspect=(0.65, 1.35),
        fill=(0.6, 1.0),
        shift_px=4,
        stroke_px=(0, 5),
        blur_px=(0.0, 2.0),
        flip_prob=0.08,
    ),
}


def font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def faces_of(families: tuple[str, ...]) -> list[str]:
    return [face for family in families for face in FONT_FAMILIES[family]]


@functools.lru_cache(maxsize=64)
def _font(face: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / face), FONT_SIZE)


def _draw_centered(char: str, face: str, stroke: int) -> Image.Image:
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    draw.text(
        (CANVAS / 2, CANVAS / 2),
        char,
        font=_font(face),
        fill=255,
        anchor="mm",
        stroke_width=max(stroke, 0),
        stroke_fill=255,
    )
    if stroke < 0:
        image = image.filter(ImageFilter.MinFilter(2 * -stroke + 1))
    return image


def _affine_warp(image: Image.Image, rng: np.random.Generator, jitter: Jitter) -> Image.Image:
    angle = math.radians(rng.uniform(-jitter.rotation_deg, jitter.rotation_deg))
    shear = rng.uniform(-jitter.shear, jitter.shear)
    aspect = rng.uniform(*jitter.aspect)
    forward = np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    ) @ np.array([[aspect, shear], [0.0, 1.0]])
    inverse = np.linalg.inv(forward)
    centre = np.array([CANVAS / 2, CANVAS / 2])
    offset = centre - inverse @ centre
    coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    return image.transform(image.size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)


def _fit_to_bitmap(image: Image.Image, rng: np.random.Generator, jitter: Jitter) -> Image.Image:
    """Crop to the ink, scale the longer side to a random fraction of 32 px, place with a shift."""
    box = image.point(lambda v: 255 if v >= THRESHOLD else 0).getbbox()
    bitmap = Image.new("L", (BITMAP, BITMAP), 0)
    if box is None:
        return bitmap
    glyph = image.crop(box)
    target = BITMAP * rng.uniform(*jitter.fill)
    scale = target / max(glyph.size)
    size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    glyph = glyph.resize(size, Image.Resampling.LANCZOS)
    dx = int(rng.integers(-jitter.shift_px, jitter.shift_px + 1))
    dy = int(rng.integers(-jitter.shift_px, jitter.shift_px + 1))
    left = min(max((BITMAP - size[0]) // 2 + dx, 0), BITMAP - size[0])
    top = min(max((BITMAP - size[1]) // 2 + dy, 0), BITMAP - size[1])
    bitmap.paste(glyph, (left, top))
    return bitmap


def block_count(binary: np.ndarray) -> np.ndarray:
    """32x32 {0,1} -> 8x8 counts in 0..16, as in the UCI optdigits preprocessing."""
    n = BITMAP // BLOCK
    return binary.reshape(n, BLOCK, n, BLOCK).sum(axis=(1, 3)).astype(np.uint8)


def render_glyph(
    char: str, face: str, rng: np.random.Generator, jitter: Jitter = Jitter()
) -> np.ndarray:
    """One jittered glyph as an 8x8 uint8 array with values 0..16."""
    stroke = int(rng.integers(jitter.stroke_px[0], jitter.stroke_px[1] + 1))
    image = _affine_warp(_draw_centered(char, face, stroke), rng, jitter)
    bitmap = _fit_to_bitmap(image, rng, jitter)
    blur = rng.uniform(*jitter.blur_px)
    if blur > 0:
        bitmap = bitmap.filter(ImageFilter.GaussianBlur(blur))
    binary = np.asarray(bitmap) >= THRESHOLD
    binary ^= rng.random(binary.shape) < jitter.flip_prob
    return block_count(binary.astype(np.uint8))


def render_set(
    chars: str,
    faces: list[str],
    per_char: int,
    seed: Sequence[int],
    jitter: Jitter = Jitter(),
) -> tuple[np.ndarray, np.ndarray]:
    """``per_char`` glyphs of each character, fonts drawn uniformly from ``faces``.

    Returns images (N, 8, 8) uint8 and labels (N,) int64 = index of the character in ``chars``.
    Each glyph has its own generator derived from (*seed, character, copy), so a set is
    reproducible and a larger ``per_char`` extends a smaller one.
    """
    images = np.empty((len(chars) * per_char, 8, 8), dtype=np.uint8)
    labels = np.empty(len(chars) * per_char, dtype=np.int64)
    row = 0
    for label, char in enumerate(chars):
        for copy in range(per_char):
            rng = np.random.default_rng([*seed, ord(char), copy])
            face = faces[int(rng.integers(len(faces)))]
            images[row] = render_glyph(char, face, rng, jitter)
            labels[row] = label
            row += 1
    return images, labels
