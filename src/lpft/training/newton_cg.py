"""Truncated Newton (Newton-CG) for L2-regularised multinomial logistic regression.

The objective is the mean cross-entropy plus ``penalty / 2 * ||coef||^2`` (bias unpenalised), in
coordinates where the features are centred and rotated into the eigenbasis of their covariance,
so the variance along each coordinate is known. Each Newton step solves ``H s = -g``
approximately by conjugate gradients preconditioned with the Hessian's diagonal as it would be
for uncorrelated coordinates (variance times the mean softmax curvature of the class, plus the
penalty), then backtracks on the exact loss.

Precision: loss and gradient are computed in float64, so the stopping test (largest absolute
gradient entry at most ``tol``) is a certificate; Hessian-vector products only steer the search
and are computed in float32 at half the cost.

Two objectives share the solver: ``InMemoryObjective`` holds the rotated features, and
``StreamedObjective`` reads raw features in chunks from a ``ChunkSource`` (a memory-mapped
cache file), applying centring and the rotation to the parameters instead of the data, so memory
stays flat in the number of examples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lpft.training.newton_rules import (
    CURVATURE_FLOOR,
    STEP_LENGTHS,
    armijo_holds,
    cg_target,
    converged,
    flat_step_helps,
)

# CG's own budget per Newton step (the rules of ``lpft.training.newton_rules`` stop it first).
MAX_CG_ITERATIONS = 500


class ChunkSource(Protocol):
    """Rows of a feature matrix, read a block at a time (e.g. from a memory-mapped file)."""

    rows: int
    dim: int

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``size`` rows, in order, as float32 arrays."""
        ...


@dataclass
class Evaluation:
    """Loss, gradient and what Hessian-vector products at the same point need."""

    loss: float
    g_coef: np.ndarray
    g_int: np.ndarray
    curvature: np.ndarray
    state: object


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softmax_hessian_times(p: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Per example (diag(p) - p p^T) d: the softmax cross-entropy curvature along d."""
    pd = p * direction
    return pd - p * pd.sum(axis=1, keepdims=True)


class InMemoryObjective:
    """Rotated, centred features ``z`` (n, r) in float64, with a float32 copy for products."""

    def __init__(self, z: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
        self.z = np.ascontiguousarray(z, dtype=np.float64)
        self.z32 = self.z.astype(np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes

    def evaluate(self, coef: np.ndarray, intercept: np.ndarray, penalty: float) -> Evaluation:
        n = len(self.labels)
        log_p = _log_softmax(self.z @ coef.T + intercept)
        rows = np.arange(n)
        loss = -log_p[rows, self.labels].sum() / n + 0.5 * penalty * float((coef * coef).sum())
        p = np.exp(log_p)
        curvature = (p * (1.0 - p)).mean(axis=0)
        state = p.astype(np.float32)
        p[rows, self.labels] -= 1.0
        p /= n
        g_coef = p.T @ self.z + penalty * coef
        return Evaluation(float(loss), g_coef, p.sum(axis=0), curvature, state)

    def hessian_times(
        self, state: np.ndarray, v_coef: np.ndarray, v_int: np.ndarray, penalty: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = self.z32.shape[0]
        direction = self.z32 @ v_coef.astype(np.float32).T + v_int.astype(np.float32)
        m = _softmax_hessian_times(state, direction)
        h_coef = (self.z32.T @ m).T.astype(np.float64) / n + penalty * v_coef
        return h_coef, m.sum(axis=0, dtype=np.float64) / n


@dataclass
class StreamedBasis:
    """What maps raw features to the solver's coordinates: z = ((x - shift) / scale - mean) R."""

    shift: float
    scale: float
    mean: np.ndarray
    rotation: np.ndarray
    variances: np.ndarray


def streamed_basis(
    source: ChunkSource, standardize: str, chunk_rows: int, rank_tol: float
) -> StreamedBasis:
    """Scalar standardisation, mean and covariance eigenbasis from one pass over ``source``.

    Products are taken in float64 around the first block's mean, which keeps the large common
    mean of network features from swamping the covariance; float32 products would lose every
    direction whose variance is below about 1e-7 of the largest, which the in-memory basis
    (float64 throughout) keeps.
    """
    n, d = source.rows, source.dim
    total = total_sq = 0.0
    column_sum = np.zeros(d)
    second = np.zeros((d, d))
    pivot: np.ndarray | None = None
    for block in source.chunks(chunk_rows):
        if pivot is None:
            pivot = block.mean(axis=0, dtype=np.float64)
        total += float(block.sum(dtype=np.float64))
        total_sq += float(np.square(block, dtype=np.float64).sum())
        centred = block - pivot
        column_sum += centred.sum(axis=0)
        second += centred.T @ centred
    if standardize == "none":
        shift, scale = 0.0, 1.0
    else:
        shift = total / (n * d)
        variance = max(total_sq / (n * d) - shift * shift, 0.0) * n * d / max(n * d - 1, 1)
        scale = math.sqrt(variance) if variance > 0 else 1.0
    offset = column_sum / n
    covariance = (second / n - np.outer(offset, offset)) / (scale * scale)
    variances, rotation = np.linalg.eigh(covariance)
    keep = variances > rank_tol * max(float(variances.max()), 1e-300)
    mean = (pivot + offset - shift) / scale
    return StreamedBasis(shift, scale, mean, rotation[:, keep], variances[keep])


class StreamedObjective:
    """The same objective over raw features read block by block from a ``ChunkSource``.

    Parameters live in the rotated basis; each pass maps them back to raw-feature space
    (k x d, cheap) instead of rotating the data. Hessian-vector products recompute the block's
    probabilities rather than storing them, so nothing of size n is kept.
    """

    def __init__(
        self,
        source: ChunkSource,
        labels: np.ndarray,
        num_classes: int,
        basis: StreamedBasis,
        chunk_rows: int,
    ) -> None:
        self.source = source
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.basis = basis
        self.chunk_rows = chunk_rows

    def _raw_parameters(
        self, coef: np.ndarray, intercept: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) with logits = x @ W.T + b for raw x equal to z @ coef.T + intercept."""
        b = self.basis
        weight = coef @ b.rotation.T / b.scale
        bias = intercept - (coef @ b.rotation.T) @ (b.mean + b.shift / b.scale)
        return weight, bias

    def _blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 0
        for block in self.source.chunks(self.chunk_rows):
            yield block, self.labels[start : start + len(block)]
            start += len(block)

    def evaluate(self, coef: np.ndarray, intercept: np.ndarray, penalty: float) -> Evaluation:
        n = len(self.labels)
        weight, bias = self._raw_parameters(coef, intercept)
        loss = 0.0
        g_weight = np.zeros_like(weight)
        g_bias = np.zeros(self.num_classes)
        curvature = np.zeros(self.num_classes)
        for block, labels in self._blocks():
            x = block.astype(np.float64)
            log_p = _log_softmax(x @ weight.T + bias)
            rows = np.arange(len(labels))
            loss -= log_p[rows, labels].sum()
            p = np.exp(log_p)
            curvature += (p * (1.0 - p)).sum(axis=0)
            p[rows, labels] -= 1.0
            g_weight += (x.T @ p).T
            g_bias += p.sum(axis=0)
        g_int = g_bias / n
        g_coef = self._to_rotated(g_weight / n, g_int) + penalty * coef
        loss = loss / n + 0.5 * penalty * float((coef * coef).sum())
        return Evaluation(loss, g_coef, g_int, curvature / n, (weight, bias))

    def hessian_times(
        self,
        state: tuple[np.ndarray, np.ndarray],
        v_coef: np.ndarray,
        v_int: np.ndarray,
        penalty: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.labels)
        weight, bias = (a.astype(np.float32) for a in state)
        v_weight, v_bias = (a.astype(np.float32) for a in self._raw_parameters(v_coef, v_int))
        h_weight = np.zeros(weight.shape)
        h_bias = np.zeros(self.num_classes)
        for block, _labels in self._blocks():
            p = np.exp(_log_softmax(block @ weight.T + bias))
            m = _softmax_hessian_times(p, block @ v_weight.T + v_bias)
            h_weight += (block.T @ m).T
            h_bias += m.sum(axis=0, dtype=np.float64)
        return self._to_rotated(h_weight / n, h_bias / n) + penalty * v_coef, h_bias / n

    def _to_rotated(self, g_weight: np.ndarray, g_bias: np.ndarray) -> np.ndarray:
        """Chain rule through raw (W, b) = map(coef, intercept): the gradient wrt coef."""
        b = self.basis
        offset = b.mean + b.shift / b.scale
        return (g_weight / b.scale - np.outer(g_bias, offset)) @ b.rotation


@dataclass
class NewtonResult:
    coef: np.ndarray
    intercept: np.ndarray
    iterations: int
    grad_max: float
    hessian_products: int


class Objective(Protocol):
    def evaluate(self, coef: np.ndarray, intercept: np.ndarray, penalty: float) -> Evaluation: ...

    def hessian_times(
        self, state: object, v_coef: np.ndarray, v_int: np.ndarray, penalty: float
    ) -> tuple[np.ndarray, np.ndarray]: ...


def _grad_max(evaluation: Evaluation) -> float:
    return float(max(np.abs(evaluation.g_coef).max(), np.abs(evaluation.g_int).max()))


def minimise(
    objective: Objective,
    coef: np.ndarray,
    intercept: np.ndarray,
    penalty: float,
    variances: np.ndarray,
    tol: float,
    max_iter: int,
) -> NewtonResult:
    """Newton-CG from (coef, intercept) until the largest gradient entry is at most ``tol``."""
    current = objective.evaluate(coef, intercept, penalty)
    iterations = products = 0
    grad_max = _grad_max(current)
    while not converged(grad_max, tol) and iterations < max_iter:
        s_coef, s_int, used = _newton_direction(
            objective, current, penalty, variances, grad_max, tol
        )
        products += used
        step = _line_search(objective, current, coef, intercept, s_coef, s_int, penalty, grad_max)
        if step is None:
            break
        coef, intercept, current = step
        grad_max = _grad_max(current)
        iterations += 1
    return NewtonResult(coef, intercept, iterations, grad_max, products)


def _line_search(
    objective: Objective,
    current: Evaluation,
    coef: np.ndarray,
    intercept: np.ndarray,
    s_coef: np.ndarray,
    s_int: np.ndarray,
    penalty: float,
    grad_max: float,
) -> tuple[np.ndarray, np.ndarray, Evaluation] | None:
    """Backtrack along ``STEP_LENGTHS`` until Armijo holds, the full step also taken when it is
    flat to rounding and shrinks the gradient (``lpft.training.newton_rules``)."""
    slope = float((current.g_coef * s_coef).sum() + (current.g_int * s_int).sum())
    for t in STEP_LENGTHS:
        trial_coef, trial_int = coef + t * s_coef, intercept + t * s_int
        trial = objective.evaluate(trial_coef, trial_int, penalty)
        if armijo_holds(trial.loss, current.loss, t, slope):
            return trial_coef, trial_int, trial
        if t == 1.0 and flat_step_helps(trial.loss, current.loss, _grad_max(trial), grad_max):
            return trial_coef, trial_int, trial
    return None


def _newton_direction(
    objective: Objective,
    current: Evaluation,
    penalty: float,
    variances: np.ndarray,
    grad_max: float,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Preconditioned CG on H s = -g, stopped once the residual is small enough.

    The residual -(g + H s) is what the quadratic model predicts the next gradient to be, so
    near the optimum CG runs until it is below the tolerance and one Newton step finishes the C.
    """
    curvature = np.maximum(current.curvature, CURVATURE_FLOOR)
    diag_coef = curvature[:, None] * variances[None, :] + penalty
    target = cg_target(grad_max, tol)
    x_coef, x_int = np.zeros_like(current.g_coef), np.zeros_like(current.g_int)
    r_coef, r_int = -current.g_coef, -current.g_int
    z_coef, z_int = r_coef / diag_coef, r_int / curvature
    p_coef, p_int = z_coef, z_int
    rz = float((r_coef * z_coef).sum() + (r_int * z_int).sum())
    used = 0
    while used < MAX_CG_ITERATIONS:
        h_coef, h_int = objective.hessian_times(current.state, p_coef, p_int, penalty)
        used += 1
        along = float((p_coef * h_coef).sum() + (p_int * h_int).sum())
        if along <= 0.0:
            if used == 1:
                return z_coef, z_int, used
            break
        alpha = rz / along
        x_coef, x_int = x_coef + alpha * p_coef, x_int + alpha * p_int
        r_coef, r_int = r_coef - alpha * h_coef, r_int - alpha * h_int
        if max(np.abs(r_coef).max(), np.abs(r_int).max()) <= target:
            break
        z_coef, z_int = r_coef / diag_coef, r_int / curvature
        rz_next = float((r_coef * z_coef).sum() + (r_int * z_int).sum())
        p_coef, p_int = z_coef + (rz_next / rz) * p_coef, z_int + (rz_next / rz) * p_int
        rz = rz_next
    return x_coef, x_int, used
