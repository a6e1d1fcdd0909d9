"""What streaming LP from the feature file costs: the streamed path against the in-memory one.

Writes ``--n`` x ``--d`` float32 features (non-negative, with a decaying spectrum, like pooled
network features) of ``--k`` classes to a ``.npy`` file, then solves the same path of ``--cs``
values of C twice with Newton-CG: in memory, and streamed from the file in blocks of the size
``lp.stream`` uses (``LogisticRegressionPath.streamed`` over ``NpyRowChunks``). Prints both
times, their ratio and the largest difference of the two solutions' logits. The file is read
through the page cache, as on a machine whose RAM holds it; beyond RAM, the disk's read rate
bounds each pass.

    python benchmarks/lp_stream.py
    python benchmarks/lp_stream.py --n 100000 --d 1024
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lpft.methods.lp import stream_chunk_rows
from lpft.training.feature_cache import NpyRowChunks
from lpft.training.logreg import LogisticRegressionPath


def features(n: int, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(k, size=n)
    scale = 1.0 / np.sqrt(np.arange(1, d + 1))
    means = rng.normal(size=(k, d)) * scale
    x = np.maximum(means[labels] + rng.normal(size=(n, d)) * scale + 0.2, 0)
    return x.astype(np.float32), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cs", type=int, default=11)
    args = parser.parse_args()
    x, labels = features(args.n, args.d, args.k)
    grid = [float(c) for c in np.logspace(-4, 1, args.cs)]
    y = torch.from_numpy(labels)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "features.npy"
        np.save(path, x)
        started = time.perf_counter()
        in_memory = LogisticRegressionPath(torch.from_numpy(x), y, args.k, solver="newton-cg")
        memory_path = in_memory.fit_path(grid)
        memory_seconds = time.perf_counter() - started
        started = time.perf_counter()
        rows = stream_chunk_rows(args.d)
        streamed = LogisticRegressionPath.streamed(NpyRowChunks(path), y, args.k, chunk_rows=rows)
        stream_path = streamed.fit_path(grid)
        stream_seconds = time.perf_counter() - started
    x64 = torch.from_numpy(x).double()
    difference = max(
        float(((x64 @ a.weight.T + a.bias) - (x64 @ b.weight.T + b.bias)).abs().max())
        for a, b in zip(memory_path, stream_path, strict=True)
    )
    converged = all(s.converged for s in memory_path + stream_path)
    print(f"n={args.n} d={args.d} k={args.k}, {args.cs} values of C, blocks of {rows} rows")
    print(f"  in memory  {memory_seconds:7.1f} s")
    print(f"  streamed   {stream_seconds:7.1f} s")
    print(f"  max |logit difference| {difference:.1e}, every C converged: {converged}")
    print(f"ratio streamed / in memory: {stream_seconds / memory_seconds:.2f}x")


if __name__ == "__main__":
    main()
