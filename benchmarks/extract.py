"""Feature extraction throughput: precision and memory layout, and the disk cache hit vs miss.

Extracts penultimate features of a GlyphResNet (random weights, chosen width and input size)
from the same in-memory synthetic images, in eval mode under ``torch.inference_mode``, as the
run's feature store does. Prints images/s for fp32 / bf16 autocast x contiguous /
channels-last, each the best of ``--repeats`` after a warm-up, with the ratio to fp32
contiguous; then the cache: the first ``FeatureCache.get_or_extract`` (extract and write a
memory-mapped entry) against the second (read it back), and their ratio.

    python benchmarks/extract.py                                   # CPU
    python benchmarks/extract.py --device cuda --width 64 --size 64 --n 16384
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lpft.models.glyph_resnet import GlyphResNet
from lpft.training.feature_cache import FeatureCache, FeatureKey, state_dict_sha256
from lpft.training.features import feature_batches
from lpft.training.loaders import TensorImageDataset, eval_loader


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def throughput(backbone, loader, device, dtype, repeats: int) -> float:
    best = float("inf")
    for attempt in range(repeats + 1):
        synchronize(device)
        started = time.perf_counter()
        for _ in feature_batches(backbone, loader, device, autocast_dtype=dtype):
            pass
        synchronize(device)
        if attempt:
            best = min(best, time.perf_counter() - started)
    return len(loader.dataset) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = torch.randn(args.n, 1, args.size, args.size)
    data = TensorImageDataset(images, torch.randint(0, 10, (args.n,)))
    loader = eval_loader(data, args.batch_size, 0)
    widths = (args.width, 2 * args.width, 4 * args.width)
    print(f"GlyphResNet widths {widths}, {args.n} images {args.size}x{args.size}, {device}")
    rates = {}
    for layout in ("contiguous", "channels_last"):
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            backbone = GlyphResNet(widths=widths, blocks_per_stage=1, input_size=args.size)
            backbone = backbone.to(device)
            if layout == "channels_last":
                backbone = backbone.to(memory_format=torch.channels_last)
            rates[(name, layout)] = throughput(backbone, loader, device, dtype, args.repeats)
    base = rates[("fp32", "contiguous")]
    for (name, layout), rate in rates.items():
        print(f"  {name} {layout:<13} {rate:10.0f} images/s  ratio {rate / base:5.2f}")

    backbone = GlyphResNet(widths=widths, blocks_per_stage=1, input_size=args.size).to(device)
    key = FeatureKey("benchmark", state_dict_sha256(backbone), "synthetic", "train", "none")
    with tempfile.TemporaryDirectory() as root:
        cache = FeatureCache(Path(root))

        def batches():
            return feature_batches(backbone, loader, device)

        started = time.perf_counter()
        first = cache.get_or_extract(key, args.n, batches)
        miss = time.perf_counter() - started
        started = time.perf_counter()
        second = cache.get_or_extract(key, args.n, batches)
        read = np.array(second.features)
        hit = time.perf_counter() - started
        assert np.array_equal(read, np.asarray(first.features))
    print(
        f"  cache miss (extract + write) {miss:7.3f} s, hit (read back) {hit:7.3f} s, "
        f"ratio {miss / hit:.0f}x"
    )


if __name__ == "__main__":
    main()
