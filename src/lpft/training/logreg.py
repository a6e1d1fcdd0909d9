"""Exact L2-regularised multinomial logistic regression over a path of C values.

For each C this solves, to a gradient tolerance, the problem scikit-learn's
``LogisticRegression(C=C)`` solves (bias unpenalised)::

    minimise  C * sum_i CE(W x_i + b, y_i) + ||W||_F^2 / 2

once per dataset, features are centred and rotated into the eigenbasis of their covariance
(keeping only the row space when n < d, which loses nothing: the optimal W lies in it). Then
each C is warm-started from the previous one and solved by one of these methods:

- ``newton``: Newton's method with the exact Hessian (built in O(n (k r)^2), factorised by
  Cholesky) and a backtracking line search. Warm-started along the path it needs 2-4 steps per C,
  even for large C on separable data where first-order methods crawl. Chosen on accelerators
  when the number of parameters k * (r + 1) is small enough for a dense Hessian; on the CPU
  only on request (Newton-CG is faster there at every size).
- ``newton-cg``: truncated Newton (``lpft.training.newton_cg``): conjugate gradients on
  Hessian-vector products (float32) with a diagonal preconditioner, float64 loss and gradient;
  warm starts extrapolate quadratically in log C from the last three solutions. The default on
  the CPU, on accelerators for problems too large for a dense Hessian, and for features
  streamed from disk (``LogisticRegressionPath.streamed``). On an accelerator the same method
  runs as ``lpft.training.device_newton``: the whole path is queued without host
  synchronisation.
- ``lbfgs``: L-BFGS on coordinates rescaled by an estimate of the curvature along each
  eigen-direction, which makes the Hessian close to the identity (on request only).

Convergence (every method): the largest absolute gradient entry of the objective divided by C n
(mean loss + penalty), in the rotated coordinates, is at most ``tol``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lpft.errors import ConfigError
from lpft.training import device_newton, newton_cg

RELATIVE_RANK_TOL = 1e-10
LBFGS_HISTORY = 20
# L-BFGS is stepped again (history kept) at most this often when its own stopping rule fires
# before the solver's gradient test passes.
MAX_CONTINUATIONS = 3
# Recompute the L-BFGS preconditioner after a C that needed more iterations than this.
REFRESH_AFTER = 15
# Newton is chosen when its dense Hessian stays cheap: k (r + 1) parameters at most this many,
# and building the Hessian (n (k (r + 1))^2 multiply-adds) at most NEWTON_MAX_FLOPS.
NEWTON_MAX_PARAMETERS = 3000
NEWTON_MAX_FLOPS = 2e9
ARMIJO = 1e-4
MIN_STEP = 1e-12
CPU = torch.device("cpu")


@dataclass
class LogRegSolution:
    """One C's optimum, in the coordinates of the raw (un-standardised) features."""

    C: float
    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    grad_max: float
    converged: bool


@dataclass
class _Basis:
    """Centred, rotated training features: z = (standardise(x) - mean) @ rotation."""

    shift: float
    scale: float
    mean: torch.Tensor
    rotation: torch.Tensor
    variances: torch.Tensor
    z: torch.Tensor | None


def _standardisation(x: torch.Tensor, mode: str) -> tuple[float, float]:
    """The paper's scalar standardisation: one mean and one std over all feature entries."""
    if mode == "none":
        return 0.0, 1.0
    std = float(x.std())
    return float(x.mean()), std if std > 0 else 1.0


def _eigenbasis(xc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal basis of the row space of ``xc`` and the variance along each direction."""
    n, d = xc.shape
    if n >= d:
        variances, rotation = torch.linalg.eigh(xc.T @ xc / n)
    else:
        variances, rotation = torch.linalg.eigh(xc @ xc.T / n)
    keep = variances > RELATIVE_RANK_TOL * variances.max().clamp_min(1e-300)
    variances, rotation = variances[keep], rotation[:, keep]
    if n < d:
        rotation = xc.T @ rotation / torch.sqrt(n * variances)
    return rotation, variances


def _build_basis(x: torch.Tensor, standardize: str) -> _Basis:
    shift, scale = _standardisation(x, standardize)
    xs = (x - shift) / scale
    mean = xs.mean(dim=0)
    xc = xs - mean
    rotation, variances = _eigenbasis(xc)
    return _Basis(shift, scale, mean, rotation, variances, xc @ rotation)


class LogisticRegressionPath:
    """Fit the regularisation path on training features (N, D) with integer labels."""

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        num_classes: int,
        standardize: str = "scalar",
        tol: float = 1e-7,
        max_iter: int = 1000,
        solver: str = "auto",
        dtype: torch.dtype = torch.float64,
        memory_limit: int | None = None,
    ) -> None:
        """``memory_limit``: bytes the solve may take on the features' device; ``newton`` is
        refused when its dense Hessian would need more (``check_dense_newton_fits``)."""
        self.labels = labels.to(features.device)
        self.onehot = F.one_hot(self.labels, num_classes).to(dtype)
        self.basis = _build_basis(features.to(dtype), standardize)
        rank = self.basis.z.shape[1]
        if solver == "auto":
            solver = choose_solver(len(self.labels), rank, num_classes, features.device)
        if solver == "newton" and memory_limit is not None:
            check_dense_newton_fits(len(self.labels), rank, num_classes, memory_limit)
        objective = None
        if solver == "newton-cg" and features.device.type == "cpu":
            objective = newton_cg.InMemoryObjective(
                self.basis.z.numpy(), self.labels.numpy(), num_classes
            )
        elif solver == "newton-cg":
            objective = device_newton.DeviceObjective(self.basis.z, self.labels, num_classes)
        self._setup(num_classes, tol, max_iter, solver, rank, objective, features.device, dtype)

    @classmethod
    def streamed(
        cls,
        source: newton_cg.ChunkSource,
        labels: torch.Tensor,
        num_classes: int,
        standardize: str = "scalar",
        tol: float = 1e-7,
        max_iter: int = 1000,
        chunk_rows: int = 16384,
    ) -> LogisticRegressionPath:
        """The path over features read block by block (e.g. a memory-mapped cache file).

        Memory is the blocks plus d x d for the eigenbasis, independent of the number of rows;
        the solver is ``newton-cg``, whose optimum is the in-memory one (to the tolerance).
        """
        basis = newton_cg.streamed_basis(source, standardize, chunk_rows, RELATIVE_RANK_TOL)
        path = cls.__new__(cls)
        path.labels = labels
        path.basis = _Basis(
            basis.shift,
            basis.scale,
            torch.from_numpy(basis.mean),
            torch.from_numpy(basis.rotation),
            torch.from_numpy(basis.variances),
            None,
        )
        objective = newton_cg.StreamedObjective(
            source, labels.numpy(), num_classes, basis, chunk_rows
        )
        rank = basis.rotation.shape[1]
        path._setup(
            num_classes,
            tol,
            max_iter,
            "newton-cg",
            rank,
            objective,
            torch.device("cpu"),
            torch.float64,
        )
        return path

    def _setup(
        self,
        num_classes: int,
        tol: float,
        max_iter: int,
        solver: str,
        rank: int,
        objective: newton_cg.Objective | device_newton.DeviceObjective | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.num_classes = num_classes
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver
        self.hessian_products = 0
        self._objective = objective
        self._coef = torch.zeros(num_classes, rank, dtype=dtype, device=device)
        self._preconditioner: tuple[torch.Tensor, torch.Tensor, float] | None = None
        self._last_iterations = 0
        self._intercept = torch.zeros(num_classes, dtype=dtype, device=device)

    def fit_path(
        self,
        Cs: Sequence[float],
        warm_start: bool = True,
        on_step: Callable[[LogRegSolution], None] | None = None,
    ) -> list[LogRegSolution]:
        """Solve for every C in the given order (ascending is best for warm starts).

        Warm starts extrapolate from the last solutions in log C (linearly from two, or for
        Newton-CG quadratically from three): the path is smooth, so the starting point is
        already close to the next optimum.
        """
        if isinstance(self._objective, device_newton.DeviceObjective):
            return self._fit_path_on_device(Cs, warm_start, on_step)
        solutions = []
        recent: list[tuple[float, torch.Tensor, torch.Tensor]] = []
        for C in Cs:
            log_c = math.log(C)
            self._coef, self._intercept = self._starting_point(log_c, recent, warm_start)
            iterations, grad_max = self._solver_step()(float(C))
            recent = [*recent, (log_c, self._coef, self._intercept)][-3:]
            weight, bias = self._to_raw_features(self._coef, self._intercept)
            solution = LogRegSolution(
                float(C), weight, bias, iterations, grad_max, grad_max <= self.tol
            )
            solutions.append(solution)
            if on_step is not None:
                on_step(solution)
        return solutions

    def _starting_point(
        self,
        log_c: float,
        recent: list[tuple[float, torch.Tensor, torch.Tensor]],
        warm_start: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not warm_start:
            return torch.zeros_like(self._coef), torch.zeros_like(self._intercept)
        if self.solver == "newton-cg" and len(recent) == 3:
            return _quadratic_extrapolation(recent, log_c)
        if len(recent) >= 2 and recent[-1][0] != recent[-2][0]:
            (c1, coef1, int1), (c2, coef2, int2) = recent[-2:]
            step = (log_c - c2) / (c2 - c1)
            return coef2 + step * (coef2 - coef1), int2 + step * (int2 - int1)
        if recent:
            return recent[-1][1], recent[-1][2]
        return self._coef, self._intercept

    def _fit_path_on_device(
        self,
        Cs: Sequence[float],
        warm_start: bool,
        on_step: Callable[[LogRegSolution], None] | None,
    ) -> list[LogRegSolution]:
        """The whole path queued on the accelerator; the host reads its results once at the end."""
        recent: list[tuple[float, torch.Tensor, torch.Tensor]] = []

        def start(C: float) -> tuple[torch.Tensor, torch.Tensor]:
            return self._starting_point(math.log(C), recent, warm_start)

        def remember(solution: device_newton.DeviceSolution) -> None:
            recent[:] = [*recent, (math.log(solution.C), solution.coef, solution.intercept)][-3:]

        found = device_newton.solve_path(
            self._objective, self.basis.variances, Cs, start, self.tol, self.max_iter, remember
        )
        iterations = torch.stack([s.iterations for s in found]).tolist()
        norms = torch.stack([s.grad_max for s in found]).tolist()
        solutions = []
        for solution, count, norm in zip(found, iterations, norms, strict=True):
            weight, bias = self._to_raw_features(solution.coef, solution.intercept)
            solutions.append(
                LogRegSolution(solution.C, weight, bias, int(count), float(norm), norm <= self.tol)
            )
            if on_step is not None:
                on_step(solutions[-1])
        if found:
            self._coef, self._intercept = found[-1].coef, found[-1].intercept
        return solutions

    def _solver_step(self) -> Callable[[float], tuple[int, float]]:
        return {"newton": self._newton, "newton-cg": self._newton_cg, "lbfgs": self._lbfgs}[
            self.solver
        ]

    def _newton_cg(self, C: float) -> tuple[int, float]:
        result = newton_cg.minimise(
            self._objective,
            self._coef.cpu().numpy(),
            self._intercept.cpu().numpy(),
            self._penalty(C),
            self.basis.variances.cpu().numpy(),
            self.tol,
            self.max_iter,
        )
        device = self._coef.device
        self._coef = torch.from_numpy(result.coef).to(device)
        self._intercept = torch.from_numpy(result.intercept).to(device)
        self.hessian_products += result.hessian_products
        return result.iterations, result.grad_max

    def _penalty(self, C: float) -> float:
        return 1.0 / (C * len(self.labels))

    def _loss_and_gradient(
        self, coef: torch.Tensor, intercept: torch.Tensor, penalty: float
    ) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean CE + penalty/2 ||coef||^2, its gradients, and the softmax probabilities."""
        z, n = self.basis.z, self.basis.z.shape[0]
        logits = z @ coef.T + intercept
        log_p = torch.log_softmax(logits, dim=1)
        loss = -(log_p * self.onehot).sum() / n + 0.5 * penalty * float((coef * coef).sum())
        p = log_p.exp()
        residual = (p - self.onehot) / n
        return float(loss), residual.T @ z + penalty * coef, residual.sum(dim=0), p

    def _newton(self, C: float) -> tuple[int, float]:
        penalty = self._penalty(C)
        coef, intercept = self._coef, self._intercept
        loss, g_coef, g_int, p = self._loss_and_gradient(coef, intercept, penalty)
        iterations = 0
        while True:
            grad_max = float(max(g_coef.abs().max(), g_int.abs().max()))
            if grad_max <= self.tol or iterations >= self.max_iter:
                break
            step_coef, step_int = self._newton_direction(p, g_coef, g_int, penalty)
            decrease = float((g_coef * step_coef).sum() + (g_int * step_int).sum())
            t = 1.0
            while True:
                trial = (coef - t * step_coef, intercept - t * step_int)
                trial_loss, *rest = self._loss_and_gradient(*trial, penalty)
                if trial_loss <= loss - ARMIJO * t * decrease or t < MIN_STEP:
                    break
                t *= 0.5
            if t < MIN_STEP:
                break
            (coef, intercept), loss = trial, trial_loss
            g_coef, g_int, p = rest
            iterations += 1
        self._coef, self._intercept = coef, intercept
        return iterations, grad_max

    def _newton_direction(
        self, p: torch.Tensor, g_coef: torch.Tensor, g_int: torch.Tensor, penalty: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Solve H s = g with the exact Hessian over [coef | intercept] for every class."""
        z = self.basis.z
        n, r = z.shape
        k = self.num_classes
        z1 = torch.cat([z, torch.ones(n, 1, dtype=z.dtype, device=z.device)], dim=1)
        m = r + 1
        weighted = p[:, :, None] * z1[:, None, :]
        hessian = -(weighted.reshape(n, k * m).T @ weighted.reshape(n, k * m)) / n
        blocks = torch.einsum("nai,nj->aij", weighted, z1) / n
        for a in range(k):
            hessian[a * m : (a + 1) * m, a * m : (a + 1) * m] += blocks[a]
        ridge = torch.full((k, m), penalty, dtype=z.dtype, device=z.device)
        # The intercepts are unpenalised and shifting all of them together changes nothing;
        # a tiny ridge there makes the Hessian positive definite without moving the optimum.
        ridge[:, r] = 1e-10 * float(blocks[:, r, r].mean().clamp_min(1e-30))
        hessian.diagonal().add_(ridge.reshape(-1))
        gradient = torch.cat([g_coef, g_int[:, None]], dim=1).reshape(-1, 1)
        factor, info = torch.linalg.cholesky_ex(hessian)
        if int(info) == 0:
            step = torch.cholesky_solve(gradient, factor)
        else:
            step = torch.linalg.lstsq(hessian, gradient).solution
        step = step.reshape(k, m)
        return step[:, :r], step[:, r]

    def _lbfgs(self, C: float) -> tuple[int, float]:
        """L-BFGS in coordinates rotated and scaled by the curvature-weighted covariance."""
        penalty = self._penalty(C)
        if self._preconditioner is None or self._last_iterations > REFRESH_AFTER:
            self._preconditioner = self._curvature_basis()
        rotation, eigenvalues, curvature = self._preconditioner
        coef_scale = 1.0 / torch.sqrt(eigenvalues + penalty)
        bias_scale = 1.0 / math.sqrt(curvature)
        u = (self._coef @ rotation) / coef_scale
        q = self._intercept / bias_scale

        def parameters() -> tuple[torch.Tensor, torch.Tensor]:
            return (u * coef_scale) @ rotation.T, q * bias_scale

        def closure() -> torch.Tensor:
            loss, g_coef, g_int, _ = self._loss_and_gradient(*parameters(), penalty)
            u.grad, q.grad = (g_coef @ rotation) * coef_scale, g_int * bias_scale
            return torch.tensor(loss, dtype=u.dtype)

        optimizer = torch.optim.LBFGS(
            [u, q],
            lr=1.0,
            max_iter=self.max_iter,
            # A gradient this small in (u, q) bounds the gradient in the solver's own
            # coordinates by about tol; the check below tightens it when it does not.
            tolerance_grad=self.tol * min(float(coef_scale.min()), bias_scale),
            tolerance_change=0.0,
            history_size=LBFGS_HISTORY,
            line_search_fn="strong_wolfe",
        )
        iterations, grad_max = 0, math.inf
        for _ in range(MAX_CONTINUATIONS + 1):
            before = optimizer.state[u].get("n_iter", 0)
            optimizer.step(closure)
            progress = optimizer.state[u].get("n_iter", 0) - before
            iterations += progress
            coef, intercept = parameters()
            _, g_coef, g_int, _ = self._loss_and_gradient(coef, intercept, penalty)
            grad_max = float(max(g_coef.abs().max(), g_int.abs().max()))
            if grad_max <= self.tol or iterations >= self.max_iter:
                break
            if progress == 0:
                # Stopped by the scaled-space tolerance alone: demand more there.
                optimizer.param_groups[0]["tolerance_grad"] /= 10
            elif progress == 1:
                break
        self._coef, self._intercept = coef.detach(), intercept.detach()
        self._last_iterations = iterations
        return iterations, grad_max

    def _curvature_basis(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Eigenbasis of the curvature-weighted feature covariance at the current solution.

        The loss Hessian is sum_i (diag(p_i) - p_i p_i^T) (x) z_i z_i^T / n. Replacing the class
        factor by each example's mean curvature w_i leaves Z^T diag(w) Z / n, whose eigenbasis
        and eigenvalues (plus the penalty) make that Hessian close to the identity. Refreshed
        only when the path gets hard (many iterations), as it changes slowly with C.
        """
        z = self.basis.z
        p = torch.softmax(z @ self._coef.T + self._intercept, dim=1)
        k = p.shape[1]
        weights = ((1.0 - (p * p).sum(dim=1)) / max(k - 1, 1)).clamp_min(1e-12)
        eigenvalues, rotation = torch.linalg.eigh((z * weights[:, None]).T @ z / z.shape[0])
        return rotation, eigenvalues.clamp_min(0.0), float(weights.mean())

    def _to_raw_features(
        self, coef: torch.Tensor, intercept: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Undo rotation, centring and scalar standardisation: logits = x @ W.T + b."""
        b = self.basis
        w_std = coef @ b.rotation.T
        weight = w_std / b.scale
        bias = intercept - w_std @ b.mean - (b.shift / b.scale) * w_std.sum(dim=1)
        return weight, bias


def dense_newton_bytes(n: int, rank: int, num_classes: int) -> int:
    """What one dense Newton step holds in float64: the Hessian over k (r + 1) parameters and
    the n x k x (r + 1) products it is built from, counted twice for temporaries of their size."""
    parameters = num_classes * (rank + 1)
    return 8 * (parameters * parameters + 2 * n * parameters)


def check_dense_newton_fits(n: int, rank: int, num_classes: int, memory_limit: int) -> None:
    needed = dense_newton_bytes(n, rank, num_classes)
    if needed > memory_limit:
        raise ConfigError(
            f"lp solver 'newton': a dense Hessian over {num_classes * (rank + 1)} parameters "
            f"needs about {needed / 2**30:.3g} GiB, more than the {memory_limit / 2**30:.3g} GiB "
            "planned for the LP solve; use solver: auto or newton-cg"
        )


def choose_solver(n: int, rank: int, num_classes: int, device: torch.device = CPU) -> str:
    """Newton-CG on the CPU (numpy) at every size: even where a dense Hessian is affordable,
    building and factorising it every step costs more than a few Hessian-vector products
    (digits-shift's LP path: 3.5 s dense, 0.1 s Newton-CG, the same validation accuracy for
    every C). On accelerators, dense Newton while its Hessian is cheap (each of its few steps
    is one factorisation), else the synchronisation-free ``device_newton``."""
    if device.type == "cpu":
        return "newton-cg"
    parameters = num_classes * (rank + 1)
    affordable = parameters <= NEWTON_MAX_PARAMETERS and n * parameters**2 <= NEWTON_MAX_FLOPS
    return "newton" if affordable else "newton-cg"


def _quadratic_extrapolation(
    recent: list[tuple[float, torch.Tensor, torch.Tensor]], log_c: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The start for the next C: the parabola in log C through the last three solutions."""
    points = [point for point, _, _ in recent]
    weights = []
    for i, xi in enumerate(points):
        weight = 1.0
        for j, xj in enumerate(points):
            if j != i:
                weight *= (log_c - xj) / (xi - xj)
        weights.append(weight)
    coef = sum(w * c for w, (_, c, _) in zip(weights, recent, strict=True))
    intercept = sum(w * b for w, (_, _, b) in zip(weights, recent, strict=True))
    return coef, intercept


def predict_logits(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    return features.to(weight.dtype) @ weight.T + bias
