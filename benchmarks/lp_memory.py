"""LP beyond RAM: peak resident memory of the streamed LP as the number of examples grows.

For each n, features (n x d, float16, shaped like a network's penultimate layer) are written to
a ``.npy`` file, then a fresh process fits the LP on them with
``LogisticRegressionPath.streamed`` (one pass for the eigenbasis, then Newton-CG at the given
values of C, every pass reading blocks of rows into one reused buffer) and reports its peak RSS.
The in-memory solver would hold the features in float64 (8 n d bytes); the streamed one holds
blocks of ``--chunk-rows`` rows, d x d matrices for the eigenbasis and the labels (8 n bytes).

    python benchmarks/lp_memory.py                 # n = 100k, 400k, 1.6M; d = 1024 (~10 min)
    python benchmarks/lp_memory.py --quick         # n = 25k, 100k, 400k
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

MIB = 1 << 20


def write_features(path: Path, n: int, d: int, k: int, seed: int) -> np.ndarray:
    """ReLU of a class-dependent 64-d code through a random map, block by block, as float16."""
    rng = np.random.default_rng(seed)
    latent = 64
    means = rng.normal(size=(k, latent)) * 0.35
    mixing = (rng.normal(size=(latent, d)) / np.sqrt(latent)).astype(np.float32)
    labels = rng.integers(k, size=n)
    out = npy_format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
    block = 65536
    for start in range(0, n, block):
        rows = labels[start : start + block]
        codes = (means[rows] + rng.normal(size=(len(rows), latent))).astype(np.float32)
        out[start : start + len(rows)] = np.maximum(codes @ mixing + 0.5, 0.0)
    out.flush()
    del out
    return labels


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM). Unlike ``getrusage``'s ru_maxrss, which
    Linux carries over from the parent across exec (the parent that wrote the features through
    a memory map would set it), VmHWM belongs to this process's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (Linux only)")


def measure(path: Path, labels_path: Path, k: int, Cs: list[float], chunk_rows: int) -> dict:
    """Runs in a fresh process: the streamed LP path, then this process's peak RSS."""
    import torch

    from lpft.training.feature_cache import NpyRowChunks
    from lpft.training.logreg import LogisticRegressionPath

    baseline = peak_rss_bytes()
    labels = torch.from_numpy(np.load(labels_path))
    started = time.perf_counter()
    path_solver = LogisticRegressionPath.streamed(
        NpyRowChunks(path), labels, k, chunk_rows=chunk_rows
    )
    solutions = path_solver.fit_path(Cs)
    return {
        "seconds": time.perf_counter() - started,
        "baseline_bytes": baseline,
        "peak_bytes": peak_rss_bytes(),
        "converged": sum(s.converged for s in solutions),
        "grad_max": max(s.grad_max for s in solutions),
        "hessian_products": path_solver.hessian_products,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000, 1_600_000])
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--C", type=float, nargs="+", default=[1e-6, 1e-5])
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--dir", type=Path, default=None, help="where the feature files go")
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        result = measure(
            Path(args.measure[0]), Path(args.measure[1]), args.classes, args.C, args.chunk_rows
        )
        print(json.dumps(result))
        return
    sizes = [25_000, 100_000, 400_000] if args.quick else args.sizes
    bound = 64 * MIB + args.chunk_rows * args.d * (2 + 4 + 8) + 6 * args.d * args.d * 8
    print(
        f"d={args.d} k={args.classes} float16 on disk, C={args.C}, blocks of {args.chunk_rows} rows"
    )
    print(
        f"stated bound: peak RSS <= after-import RSS + {bound / MIB:.0f} MiB + 8 bytes x n (labels)"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        for n in sizes:
            path, labels_path = Path(scratch) / "x.npy", Path(scratch) / "y.npy"
            np.save(labels_path, write_features(path, n, args.d, args.classes, seed=0))
            command = [
                sys.executable,
                __file__,
                "--measure",
                str(path),
                str(labels_path),
                "--classes",
                str(args.classes),
                "--chunk-rows",
                str(args.chunk_rows),
                "--C",
                *map(str, args.C),
            ]
            result = json.loads(
                subprocess.run(
                    command, capture_output=True, check=True, text=True
                ).stdout.splitlines()[-1]
            )
            grown = result["peak_bytes"] - result["baseline_bytes"]
            within = grown <= bound + 8 * n
            print(
                f"n={n:>9,d}: features on disk {path.stat().st_size / MIB:7.0f} MiB, "
                f"in memory as float64 {8 * n * args.d / MIB:7.0f} MiB; peak RSS "
                f"{result['peak_bytes'] / MIB:6.0f} MiB (after import "
                f"{result['baseline_bytes'] / MIB:.0f}, grown {grown / MIB:5.0f} MiB, "
                f"{'within' if within else 'OVER'} bound {(bound + 8 * n) / MIB:.0f}); "
                f"{result['seconds']:6.1f} s, {result['hessian_products']} Hessian products, "
                f"{result['converged']}/{len(args.C)} converged (max|grad| "
                f"{result['grad_max']:.1e})"
            )
            path.unlink()


if __name__ == "__main__":
    main()
