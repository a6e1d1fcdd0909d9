"""The LP solver reaches scikit-learn's optimum, cold or warm-started, with either solver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lpft.training.feature_cache import NpyRowChunks
from lpft.training.logreg import LogisticRegressionPath, choose_solver, predict_logits


def features(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    spectrum = 1.0 / np.arange(1, d + 1)
    means = rng.normal(size=(k, d)) * np.sqrt(spectrum)
    labels = rng.integers(k, size=n)
    x = means[labels] + rng.normal(size=(n, d)) * np.sqrt(spectrum)
    return np.maximum(x + 0.2, 0.0), labels


def sklearn_fit(x: np.ndarray, y: np.ndarray, C: float) -> LogisticRegression:
    return LogisticRegression(C=C, tol=1e-12, max_iter=100_000).fit(x, y)


def centred(bias: np.ndarray) -> np.ndarray:
    """Softmax ignores a common shift of all intercepts; compare them up to it."""
    return bias - bias.mean()


@pytest.mark.parametrize("solver", ["newton", "newton-cg", "lbfgs"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_optimum(solver: str, seed: int) -> None:
    x, y = features(300, 40, 4, seed)
    Cs = [1e-3, 1e-1, 10.0]
    path = LogisticRegressionPath(
        torch.tensor(x), torch.tensor(y), 4, standardize="none", tol=1e-8, solver=solver
    )
    for solution in path.fit_path(Cs):
        reference = sklearn_fit(x, y, solution.C)
        weight = solution.weight.numpy()
        assert solution.converged
        assert np.linalg.norm(weight - reference.coef_) <= 1e-4 * np.linalg.norm(reference.coef_)
        np.testing.assert_allclose(
            centred(solution.bias.numpy()), centred(reference.intercept_), atol=1e-4
        )
        ours = predict_logits(torch.tensor(x), solution.weight, solution.bias).argmax(1).numpy()
        np.testing.assert_array_equal(ours, reference.predict(x))


def test_scalar_standardisation_solves_the_standardised_problem() -> None:
    x, y = features(200, 30, 3, seed=2)
    mean, std = x.mean(), x.std()
    path = LogisticRegressionPath(torch.tensor(x), torch.tensor(y), 3, tol=1e-8)
    solution = path.fit_path([0.3])[0]
    reference = sklearn_fit((x - mean) / std, y, 0.3)
    # Raw-feature weights are the standardised ones divided by the scalar std.
    rescaled = solution.weight.numpy() * std
    assert np.linalg.norm(rescaled - reference.coef_) <= 1e-4 * np.linalg.norm(reference.coef_)
    raw_logits = predict_logits(torch.tensor(x), solution.weight, solution.bias).numpy()
    std_logits = reference.decision_function((x - mean) / std)
    np.testing.assert_allclose(
        raw_logits - raw_logits.mean(1, keepdims=True),
        std_logits - std_logits.mean(1, keepdims=True),
        rtol=1e-3,
        atol=1e-3,
    )


def test_fewer_examples_than_dimensions_uses_the_row_space() -> None:
    x, y = features(40, 120, 3, seed=3)
    path = LogisticRegressionPath(torch.tensor(x), torch.tensor(y), 3, standardize="none", tol=1e-8)
    assert path.basis.z.shape[1] < 40
    solution = path.fit_path([1.0])[0]
    reference = sklearn_fit(x, y, 1.0)
    assert np.linalg.norm(solution.weight.numpy() - reference.coef_) <= 1e-4 * np.linalg.norm(
        reference.coef_
    )


@pytest.mark.parametrize("solver", ["newton", "newton-cg", "lbfgs"])
def test_warm_started_path_reaches_the_cold_start_optimum(solver: str) -> None:
    x, y = features(250, 25, 5, seed=4)
    Cs = list(np.logspace(-4, 2, 13))
    tol = 1e-7
    warm = LogisticRegressionPath(torch.tensor(x), torch.tensor(y), 5, tol=tol, solver=solver)
    cold = LogisticRegressionPath(torch.tensor(x), torch.tensor(y), 5, tol=tol, solver=solver)
    parameters = 5 * (warm.basis.z.shape[1] + 1)
    for a, b in zip(warm.fit_path(Cs), cold.fit_path(Cs, warm_start=False), strict=True):
        assert a.converged and b.converged
        # The objective (mean loss + penalty) is strongly convex with modulus 1 / (C n), so two
        # points whose gradients are below tol lie within 2 tol sqrt(#params) C n of each other
        # (in standardised coordinates; raw weights divide by the scalar std).
        bound = 2 * tol * np.sqrt(parameters) * a.C * len(y) / warm.basis.scale
        assert float((a.weight - b.weight).norm()) <= bound


def test_warm_start_saves_iterations() -> None:
    x, y = features(400, 30, 4, seed=5)
    Cs = list(np.logspace(-5, 1, 19))
    warm = LogisticRegressionPath(torch.tensor(x), torch.tensor(y), 4, solver="lbfgs")
    cold = LogisticRegressionPath(torch.tensor(x), torch.tensor(y), 4, solver="lbfgs")
    warm_iterations = sum(s.iterations for s in warm.fit_path(Cs))
    cold_iterations = sum(s.iterations for s in cold.fit_path(Cs, warm_start=False))
    assert warm_iterations < cold_iterations


def test_solver_choice_is_newton_cg_on_cpu_and_dense_newton_only_for_small_gpu_problems() -> None:
    assert choose_solver(n=200, rank=128, num_classes=10) == "newton-cg"
    assert choose_solver(n=10_000, rank=1024, num_classes=100) == "newton-cg"
    gpu = torch.device("cuda")
    assert choose_solver(n=200, rank=128, num_classes=10, device=gpu) == "newton"
    assert choose_solver(n=10_000, rank=1024, num_classes=100, device=gpu) == "newton-cg"


def wide_spectrum(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 features whose variances span ten decades, in a random basis, with a common
    offset (as network features have)."""
    rng = np.random.default_rng(seed)
    stds = 10.0 ** np.linspace(0, -5, d)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    labels = rng.integers(k, size=n)
    means = rng.normal(size=(k, d)) * stds
    x = (means[labels] + rng.normal(size=(n, d)) * stds) @ rotation.T + 3.0
    return x.astype(np.float32), labels


def test_streamed_and_in_memory_paths_keep_the_same_basis_and_select_the_same_c(
    tmp_path: Path,
) -> None:
    x, y = wide_spectrum(3000, 48, 5, seed=0)
    train, val = slice(0, 2000), slice(2000, None)
    np.save(tmp_path / "train.npy", x[train])
    labels = torch.from_numpy(y[train])
    in_memory = LogisticRegressionPath(torch.from_numpy(x[train]), labels, 5, solver="newton-cg")
    streamed = LogisticRegressionPath.streamed(
        NpyRowChunks(tmp_path / "train.npy"), labels, 5, chunk_rows=500
    )
    assert len(streamed.basis.variances) == len(in_memory.basis.variances) > 45
    torch.testing.assert_close(
        streamed.basis.variances, in_memory.basis.variances, rtol=1e-6, atol=0
    )

    grid = [1e-2, 1.0, 1e2, 1e4]
    x_val, y_val = torch.from_numpy(x[val]), torch.from_numpy(y[val])

    def val_accuracies(path: LogisticRegressionPath) -> list[float]:
        return [
            float((predict_logits(x_val, s.weight, s.bias).argmax(1) == y_val).double().mean())
            for s in path.fit_path(grid)
        ]

    ours, reference = val_accuracies(streamed), val_accuracies(in_memory)
    assert ours == reference
    assert int(np.argmax(ours)) == int(np.argmax(reference))
