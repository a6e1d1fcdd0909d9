"""The official LP-FT code's linear probe, run through scikit-learn itself.

The official code (``log_reg_sk.py`` in the paper's repository) standardises the training
features by one scalar mean and the population standard deviation of all their entries, then
fits one ``LogisticRegression(warm_start=True, max_iter=20)`` (L-BFGS) for each C of the grid
in ascending order, each fit starting where the previous stopped. Each C's head is therefore a
truncated iterate, not the optimum: the iteration cap acts as extra regularisation. This module
reproduces that recipe exactly (same estimator, same order, same warm start, same cap) and maps
every head back to the raw-feature coordinates, as the official code does before LP-FT.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

OFFICIAL_MAX_ITER = 20
ABSENT_CLASS_BIAS = -1e4


@dataclass
class OfficialSolution:
    """One C's head after the official recipe, in raw-feature coordinates."""

    C: float
    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    converged: bool


def scalar_standardisation(features: np.ndarray) -> tuple[float, float]:
    """One mean and one population standard deviation over every entry (``np.std``)."""
    std = float(features.std())
    return float(features.mean()), std if std > 0 else 1.0


def official_lp_path(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    Cs: Sequence[float],
    seed: int = 0,
    max_iter: int = OFFICIAL_MAX_ITER,
    on_step: Callable[[OfficialSolution], None] | None = None,
) -> list[OfficialSolution]:
    """The official warm-started, iteration-capped L-BFGS path over ``Cs`` (ascending)."""
    x = features.detach().cpu().double().numpy()
    y = labels.detach().cpu().numpy()
    mean, std = scalar_standardisation(x)
    z = (x - mean) / std
    classifier = LogisticRegression(warm_start=True, max_iter=max_iter, random_state=seed)
    solutions = []
    for C in sorted(Cs):
        classifier.C = C
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(z, y)
        weight, bias = _full_head(classifier, num_classes)
        iterations = int(np.max(classifier.n_iter_))
        solution = OfficialSolution(
            C=float(C),
            weight=torch.from_numpy(weight / std),
            bias=torch.from_numpy(bias - weight.sum(axis=1) * mean / std),
            iterations=iterations,
            converged=iterations < max_iter,
        )
        solutions.append(solution)
        if on_step is not None:
            on_step(solution)
    return solutions


def _full_head(classifier: LogisticRegression, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(num_classes, d) weights and biases over every class of the benchmark.

    scikit-learn fits a single logit for two classes; the symmetric pair (-w/2, w/2) gives the
    same probabilities. A class absent from the training labels gets a zero row and a very
    negative bias, so it is never predicted (scikit-learn cannot predict it either).
    """
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(classifier.classes_) == 2:
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weight = np.zeros((num_classes, coef.shape[1]))
    bias = np.full(num_classes, ABSENT_CLASS_BIAS)
    weight[classifier.classes_] = coef
    bias[classifier.classes_] = intercept
    return weight, bias
