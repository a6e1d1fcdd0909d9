"""LP solver benchmark: lpft's regularisation path vs scikit-learn refit per C.

Both fit the same L2-regularised multinomial logistic regression on the same synthetic
"pretrained features", standardised by one scalar mean and std as in the paper, for every C on
the same grid; scikit-learn refits from scratch for each C (lbfgs, tol 1e-6, max_iter 5000).
lpft solves every C to max |gradient| <= 1e-7 (mean loss + penalty).

Two feature generators (see ``relu_latent`` and ``gaussian_spectrum``), k = 10 and k = 100. At
k = 100 (``--block-from``) scikit-learn is slow, so both are timed on a contiguous block of the
grid (``--block`` values around the middle of the grid), and lpft's path starts cold at the
block's first C; the full-grid lpft time is printed as well. On an accelerator (``--device
cuda``) lpft is warmed up once on a small problem first; scikit-learn runs on this machine's
CPU. Prints, per case, both times, the ratio, the C each
selects by validation accuracy, and as the last line ``speedup <ratio>x``: total scikit-learn time
over total lpft time across all cases.

    python benchmarks/lp_solver.py            # n=10000, d=1024, k=10 and k=100 (~10 min)
    python benchmarks/lp_solver.py --quick    # n=2000, d=256, every 3rd C (under 2 minutes)
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from lpft.methods.lp import default_c_grid
from lpft.training.logreg import LogisticRegressionPath, predict_logits

SKLEARN_TOL = 1e-6
SKLEARN_MAX_ITER = 5000
LPFT_TOL = 1e-7


def relu_latent(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features shaped like a network's penultimate layer: a class-dependent latent code of
    dimension 64 through a random linear map and a ReLU, plus a little isotropic noise. Like real
    features they are non-negative, share a large common mean, are strongly correlated (a fast
    decaying covariance spectrum) and the classes overlap (validation accuracy well below 100%).
    """
    rng = np.random.default_rng(seed)
    latent = 64
    means = rng.normal(size=(k, latent)) * 0.35
    labels = rng.integers(k, size=n)
    codes = means[labels] + rng.normal(size=(n, latent))
    mixing = rng.normal(size=(latent, d)) / np.sqrt(latent)
    features = np.maximum(codes @ mixing + 0.5, 0.0) + 0.05 * rng.normal(size=(n, d))
    return features.astype(np.float32), labels


def gaussian_spectrum(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-rank features: class means and noise along a 1/i covariance spectrum in a random
    basis, shifted and clipped at zero like post-ReLU activations. Unlike ``relu_latent`` every
    direction carries signal, so the large-C end is harder (less separable, more curvature)."""
    rng = np.random.default_rng(seed + 1000)
    scales = 1.0 / np.sqrt(np.arange(1, d + 1))
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    labels = rng.integers(k, size=n)
    means = rng.normal(size=(k, d)) * scales * 0.12
    codes = (means[labels] + rng.normal(size=(n, d)) * scales) @ basis.T
    return np.maximum(codes + 0.1, 0.0).astype(np.float32), labels


GENERATORS: dict[str, Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray]]] = {
    "relu-latent": relu_latent,
    "gaussian-spectrum": gaussian_spectrum,
}


@dataclass
class Fit:
    seconds: float
    accuracies: list[float]
    iterations: list[int]
    converged: int
    note: str


def run_sklearn(x, y, xv, yv, grid) -> Fit:
    mean, std = float(x.mean()), float(x.std())
    xs, xvs = (x - mean) / std, (xv - mean) / std
    accuracies, iterations = [], []
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in grid:
            model = LogisticRegression(C=C, tol=SKLEARN_TOL, max_iter=SKLEARN_MAX_ITER)
            model.fit(xs, y)
            accuracies.append(model.score(xvs, yv))
            iterations.append(int(np.max(model.n_iter_)))
    seconds = time.perf_counter() - started
    hit_max = sum(i >= SKLEARN_MAX_ITER for i in iterations)
    return Fit(seconds, accuracies, iterations, len(grid) - hit_max, "lbfgs, refit per C")


def run_lpft(x, y, xv, yv, grid, k, device, solver) -> Fit:
    features = torch.from_numpy(x).to(device)
    labels = torch.from_numpy(y).to(device)
    val = torch.from_numpy(xv).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    path = LogisticRegressionPath(features, labels, k, tol=LPFT_TOL, solver=solver)
    solutions = path.fit_path(grid)
    truth = torch.from_numpy(yv)
    accuracies = [
        float((predict_logits(val, s.weight, s.bias).argmax(1).cpu() == truth).double().mean())
        for s in solutions
    ]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    converged = sum(s.converged for s in solutions)
    worst = max(s.grad_max for s in solutions)
    note = f"{path.solver}, {device.type}, max|grad| {worst:.1e}"
    return Fit(seconds, accuracies, [s.iterations for s in solutions], converged, note)


def describe(name: str, fit: Fit, grid: list[float]) -> str:
    best = int(np.argmax(fit.accuracies))
    return (
        f"  {name:<13}{fit.seconds:8.2f} s  iterations {sum(fit.iterations):6d}  "
        f"converged {fit.converged}/{len(grid)}  selected C {grid[best]:.3g} "
        f"(val {100 * fit.accuracies[best]:.2f}%)  [{fit.note}]"
    )


def benchmark(
    generator: str, n: int, d: int, k: int, grid: list[float], block: slice | None, args
) -> tuple[float, float]:
    x, y = GENERATORS[generator](n + n // 5, d, k, k)
    x, xv, y, yv = x[:n], x[n:], y[:n], y[n:]
    device = torch.device(args.device)
    timed = grid if block is None else grid[block]
    span = "full grid" if block is None else f"block of {len(timed)} contiguous values"
    print(
        f"\n{generator}: n={n} d={d} k={k}; timed on the {span}, "
        f"C in [{timed[0]:.3g}, {timed[-1]:.3g}]"
    )
    if device.type != "cpu":
        run_lpft(x[:512], y[:512], xv, yv, grid[:3], k, device, args.solver)
    if block is not None:
        full = run_lpft(x, y, xv, yv, grid, k, device, args.solver)
        print(describe("lpft full", full, grid) + f"  (all {len(grid)} values of C)")
    ours = run_lpft(x, y, xv, yv, timed, k, device, args.solver)
    theirs = run_sklearn(x, y, xv, yv, timed)
    print(describe("scikit-learn", theirs, timed))
    print(describe("lpft", ours, timed))
    ours_best, theirs_best = int(np.argmax(ours.accuracies)), int(np.argmax(theirs.accuracies))
    gap = 100 * abs(ours.accuracies[theirs_best] - theirs.accuracies[theirs_best])
    same = "same C" if ours_best == theirs_best else "DIFFERENT C"
    print(
        f"  ratio {theirs.seconds / ours.seconds:.1f}x; selection: {same}, "
        f"|val acc difference at scikit-learn's C| = {gap:.2f} points"
    )
    return theirs.seconds, ours.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--solver", default="auto", help="lpft solver (auto, newton-cg, ...)")
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--generators", nargs="+", default=list(GENERATORS), choices=GENERATORS)
    parser.add_argument("--n", type=int, default=10_000, help="training examples")
    parser.add_argument("--d", type=int, default=1024, help="feature dimension")
    parser.add_argument("--block", type=int, default=8, help="values of C in a timed block")
    parser.add_argument(
        "--block-from", type=int, default=100, help="time a block of C from this many classes"
    )
    args = parser.parse_args()
    grid = default_c_grid()
    n, d = args.n, args.d
    if args.quick:
        n, d, grid = 2000, 256, grid[::3]
    print(f"torch threads: {torch.get_num_threads()}")
    totals = np.zeros(2)
    for generator in args.generators:
        for k in args.classes:
            block = None
            if k >= args.block_from and not args.quick:
                start = (len(grid) - args.block) // 2
                block = slice(start, start + args.block)
            totals += benchmark(generator, n, d, k, grid, block, args)
    print(f"\ntotal: scikit-learn {totals[0]:.1f} s, lpft {totals[1]:.1f} s")
    print(f"speedup {totals[0] / totals[1]:.1f}x")


if __name__ == "__main__":
    main()
