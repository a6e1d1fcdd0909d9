"""Reading a ``folder`` benchmark for several epochs: decode cache against decoding every epoch.

Writes ``--n`` PNG photos of ``--width`` x ``--height`` (random sizes up to that) into a
temporary data root, builds the benchmark twice (``decode_cache_mb`` default, then 0: every read
decodes the file), and times ``--epochs`` passes over ID train through what loader workers do
per image for a split too large to store, with ``rrc_flip`` for a 224-pixel natural-image
backbone: read the image and shrink it to the stored uint8 pixels (crops, flips and
normalisation then run on whole batches on the device). Prints both times and their ratio, and
the share of the uncached time spent decoding.

    python benchmarks/folder_decode.py
    python benchmarks/folder_decode.py --n 2000 --epochs 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lpft.data import BuildContext, create_benchmark
from lpft.data.folder import decode
from lpft.data.transforms import pixel_transform
from lpft.models import InputSpec

SPEC = InputSpec(
    size=224, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic", crop_pct=0.875
)


def write_photos(root: Path, n: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", 3), ("ood/other", 3)):
        for i in range(count):
            label = f"class{i % 2}"
            size = (int(rng.integers(height // 2, height)), int(rng.integers(width // 2, width)))
            pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            path = root / split / label / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)


def epochs_seconds(root: Path, epochs: int, cache_mb: int) -> float:
    options = {"augment": "rrc_flip", "decode_cache_mb": cache_mb}
    benchmark = create_benchmark("folder", options, BuildContext(root, root / ".cache", False))
    transform = pixel_transform("rrc_flip", SPEC, train=True)
    started = time.perf_counter()
    for _ in range(epochs):
        for index in range(len(benchmark.id_train)):
            transform(benchmark.id_train[index][0])
    return time.perf_counter() - started


def decode_seconds(root: Path, epochs: int) -> float:
    paths = sorted(str(p) for p in (root / "train").rglob("*.png"))
    started = time.perf_counter()
    for _ in range(epochs):
        for path in paths:
            decode(path)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="training images")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "photos"
        write_photos(root, args.n, args.width, args.height)
        cached = epochs_seconds(root, args.epochs, cache_mb=4096)
        uncached = epochs_seconds(root, args.epochs, cache_mb=0)
        decoding = decode_seconds(root, args.epochs)
    print(f"{args.n} PNGs up to {args.width}x{args.height}, {args.epochs} epochs of rrc_flip")
    print(f"decode cache:        {cached:8.2f} s")
    print(f"decode every epoch:  {uncached:8.2f} s  ({uncached / cached:.2f}x the cached time)")
    print(f"decoding alone:      {decoding:8.2f} s  ({decoding / uncached:.0%} of the uncached)")


if __name__ == "__main__":
    main()
