"""LP solver benchmark: lpft's regularisation path vs scikit-learn refit per C.

Both fit the same L2-regularised multinomial logistic regression on the same synthetic
"pretrained features" (see ``synthetic_features``), standardised by one scalar mean and std as
in the paper, for every C on the same grid;
scikit-learn refits from scratch for each C (lbfgs, tol 1e-6, max_iter 5000). Prints both
times, the ratio, and the C each selects by validation accuracy with that accuracy.

    python benchmarks/lp_solver.py            # n=10000, d=1024, k=10 and k=100
    python benchmarks/lp_solver.py --quick    # smaller problem and grid, for a smoke check
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from lpft.methods.lp import default_c_grid
from lpft.training.logreg import LogisticRegressionPath, predict_logits

SKLEARN_TOL = 1e-6
SKLEARN_MAX_ITER = 5000


def synthetic_features(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def standardise(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return (x - mean) / std


def run_sklearn(xs, y, xv, yv, grid):
    accuracies, iterations = [], []
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in grid:
            model = LogisticRegression(C=C, tol=SKLEARN_TOL, max_iter=SKLEARN_MAX_ITER)
            model.fit(xs, y)
            accuracies.append(model.score(xv, yv))
            iterations.append(int(np.max(model.n_iter_)))
    return time.perf_counter() - started, accuracies, iterations


def run_lpft(x, y, xv, yv, grid, k, device):
    features = torch.from_numpy(x).to(device)
    labels = torch.from_numpy(y).to(device)
    val = torch.from_numpy(xv).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    path = LogisticRegressionPath(features, labels, k, standardize="scalar")
    solutions = path.fit_path(grid)
    accuracies = [
        float(
            (predict_logits(val, s.weight, s.bias).argmax(1).cpu() == torch.from_numpy(yv))
            .double()
            .mean()
        )
        for s in solutions
    ]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    converged = sum(s.converged for s in solutions)
    return seconds, accuracies, [s.iterations for s in solutions], converged, path.solver


def benchmark(
    n: int, d: int, k: int, grid: list[float], device: torch.device, with_sklearn: bool
) -> None:
    x, y = synthetic_features(n + n // 5, d, k, seed=k)
    x, xv, y, yv = x[:n], x[n:], y[:n], y[n:]
    lp_time, lp_acc, lp_iter, converged, solver = run_lpft(x, y, xv, yv, grid, k, device)
    lp_best = int(np.argmax(lp_acc))
    print(f"\nn={n} d={d} k={k}, {len(grid)} values of C in [{grid[0]:.0e}, {grid[-1]:.0e}]")
    if not with_sklearn:
        print(
            f"  lpft path ({solver}, {device.type}): {lp_time:8.2f} s  "
            f"(iterations {sum(lp_iter)}, {converged}/{len(grid)} converged to tol); "
            f"selected C {grid[lp_best]:.3g} (val {100 * lp_acc[lp_best]:.2f}%)"
        )
        return
    mean, std = float(x.mean()), float(x.std())
    sk_time, sk_acc, sk_iter = run_sklearn(
        standardise(x, mean, std), y, standardise(xv, mean, std), yv, grid
    )
    sk_best = int(np.argmax(sk_acc))
    print(
        f"  scikit-learn lbfgs, refit per C: {sk_time:8.2f} s  "
        f"(iterations {sum(sk_iter)}, {sum(i >= SKLEARN_MAX_ITER for i in sk_iter)} hit max)"
    )
    print(
        f"  lpft path ({solver}, {device.type}):      {lp_time:8.2f} s  "
        f"(iterations {sum(lp_iter)}, {converged}/{len(grid)} converged to tol)"
    )
    print(f"  speed-up: {sk_time / lp_time:.1f}x")
    print(
        f"  selected C: sklearn {grid[sk_best]:.3g} (val {100 * sk_acc[sk_best]:.2f}%), "
        f"lpft {grid[lp_best]:.3g} (val {100 * lp_acc[lp_best]:.2f}%); "
        f"lpft val at sklearn's C: {100 * lp_acc[sk_best]:.2f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--skip-sklearn", action="store_true", help="time lpft only")
    parser.add_argument("--n", type=int, default=10_000, help="training examples")
    parser.add_argument("--d", type=int, default=1024, help="feature dimension")
    args = parser.parse_args()
    grid = default_c_grid()
    n, d = args.n, args.d
    if args.quick:
        n, d, grid = 2000, 256, grid[::3]
    print(f"torch threads: {torch.get_num_threads()}")
    for k in args.classes:
        benchmark(n, d, k, grid, torch.device(args.device), not args.skip_sklearn)


if __name__ == "__main__":
    main()
