"""The official LP recipe against scikit-learn run directly, as the official code runs it."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from lpft.training.official_lp import OFFICIAL_MAX_ITER, official_lp_path

CS = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
DIM = 30


def features_and_labels(classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes; one coordinate on a 50x larger scale, which one scalar
    standardisation leaves ill-conditioned, so that 20 iterations do not reach the optimum."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), 60)
    centres = rng.normal(0.0, 1.0, (classes, DIM))
    features = 3.0 + 2.0 * (centres[labels] + rng.normal(0.0, 2.0, (len(labels), DIM)))
    features[:, 0] *= 50
    return features.astype(np.float32), labels


def sklearn_directly(features: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """The official recipe written out: scalar mean and population std, one warm-started
    estimator capped at 20 iterations, C ascending; heads mapped back to raw features."""
    x = features.astype(np.float64)
    mean, std = x.mean(), x.std()
    classifier = LogisticRegression(warm_start=True, max_iter=20, random_state=0)
    heads = []
    for C in CS:
        classifier.C = C
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit((x - mean) / std, labels)
        coef, intercept = classifier.coef_, classifier.intercept_
        heads.append(
            (
                coef / std,
                intercept - coef.sum(axis=1) * mean / std,
                classifier.predict_proba((x - mean) / std),
            )
        )
    return heads


def test_official_path_is_the_warm_started_truncated_sklearn_path() -> None:
    features, labels = features_and_labels(classes=3)
    solutions = official_lp_path(torch.from_numpy(features), torch.from_numpy(labels), 3, CS)
    expected = sklearn_directly(features, labels)
    assert [s.C for s in solutions] == CS
    for solution, (weight, bias, _) in zip(solutions, expected, strict=True):
        np.testing.assert_allclose(solution.weight.numpy(), weight, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(solution.bias.numpy(), bias, rtol=1e-10, atol=1e-12)
    # The cap binds on the weakly regularised end: truncated iterates, not the optima.
    capped = [s for s in solutions if s.iterations == OFFICIAL_MAX_ITER]
    assert capped and not any(s.converged for s in capped)


def test_two_classes_give_sklearns_probabilities() -> None:
    features, labels = features_and_labels(classes=2, seed=1)
    solutions = official_lp_path(torch.from_numpy(features), torch.from_numpy(labels), 2, CS)
    for solution, (_, _, probabilities) in zip(
        solutions, sklearn_directly(features, labels), strict=True
    ):
        logits = torch.from_numpy(features).double() @ solution.weight.T + solution.bias
        np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), probabilities, atol=1e-9)


def test_a_class_missing_from_training_is_never_predicted() -> None:
    features, labels = features_and_labels(classes=3, seed=2)
    solution = official_lp_path(torch.from_numpy(features), torch.from_numpy(labels), 4, [1.0])[0]
    logits = torch.from_numpy(features).double() @ solution.weight.T + solution.bias
    assert solution.weight.shape == (4, DIM)
    assert not (logits.argmax(1) == 3).any()
    assert solution.weight[3].abs().sum() == 0.0
