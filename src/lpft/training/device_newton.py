"""Newton-CG over the whole C path on an accelerator, with no host synchronisation.

The same objective and certificate as ``lpft.training.newton_cg`` (mean cross-entropy plus
``penalty / 2 * ||coef||^2`` in centred, rotated coordinates; float64 loss and gradient, float32
Hessian-vector products, the diagonal preconditioner), restructured so that nothing inside the
path loop waits for the device: every decision a CPU solver takes with an ``if`` is a mask here.

- Each C gets a fixed budget of Newton steps, each with a fixed budget of CG iterations. CG stops
  improving its solution once its residual is small enough (the step size becomes zero), and a
  converged C's Newton step is zero, so spare iterations cost compute but change nothing.
- The rules are those of ``lpft.training.newton_rules`` (constants, stopping test, CG target,
  line search, flat-step fallback). The line search evaluates the loss at every step length of
  the backtracking sequence at once and takes the longest that satisfies Armijo, or the full
  step when its loss is flat to rounding and its gradient smaller.
- Iteration counts and gradient norms stay on the device; the host reads them once, after the
  path. Any C whose gradient is still above the tolerance then gets another round, starting from
  where it stopped (one read per round).

Each kernel is tiny for LP-sized problems, so launching them one by one would cost more than
running them: on CUDA a round is captured once as a CUDA graph and replayed for every C
(``NewtonRound``). The fixed budget is chosen so that a typical C converges in one round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lpft.training.newton_rules import (
    ARMIJO,
    CURVATURE_FLOOR,
    FORCING_MAX,
    RESIDUAL_FRACTION_OF_TOL,
    ROUNDING,
    STEP_LENGTHS,
)

# The device's fixed budgets: Newton steps per round, CG iterations per Newton step.
NEWTON_STEPS = 4
CG_STEPS = 48

Start = Callable[[float], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class DeviceSolution:
    """One C's optimum in the rotated coordinates; counts and norms are device tensors."""

    C: float
    coef: torch.Tensor
    intercept: torch.Tensor
    iterations: torch.Tensor
    grad_max: torch.Tensor


class DeviceObjective:
    """Rotated, centred features on the device: float64 for the loss, float32 for products."""

    def __init__(self, z: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
        self.z = z.to(torch.float64)
        self.z32 = self.z.to(torch.float32)
        self.labels = labels.to(z.device)[:, None]
        self.onehot = torch.nn.functional.one_hot(self.labels[:, 0], num_classes).to(torch.float64)
        self.n = z.shape[0]

    def evaluate(self, coef: torch.Tensor, intercept: torch.Tensor, penalty: torch.Tensor) -> dict:
        return self.at_logits(self.z @ coef.T + intercept, coef, penalty)

    def at_logits(self, logits: torch.Tensor, coef: torch.Tensor, penalty: torch.Tensor) -> dict:
        """``evaluate`` at the point whose logits are given (one product with z, not two)."""
        log_p = torch.log_softmax(logits, dim=1)
        loss = -(log_p * self.onehot).sum() / self.n + 0.5 * penalty * (coef * coef).sum()
        p = log_p.exp()
        residual = (p - self.onehot) / self.n
        g_coef = residual.T @ self.z + penalty * coef
        g_int = residual.sum(dim=0)
        return {
            "loss": loss,
            "logits": logits,
            "g_coef": g_coef,
            "g_int": g_int,
            "grad_max": torch.maximum(g_coef.abs().max(), g_int.abs().max()),
            "p32": p.to(torch.float32),
            "curvature": (p * (1.0 - p)).mean(dim=0),
        }

    def hessian_times(
        self, p32: torch.Tensor, v_coef: torch.Tensor, v_int: torch.Tensor, penalty: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        direction = self.z32 @ v_coef.to(torch.float32).T + v_int.to(torch.float32)
        along = p32 * direction
        m = along - p32 * along.sum(dim=1, keepdim=True)
        h_coef = (m.T @ self.z32).to(torch.float64) / self.n + penalty * v_coef
        return h_coef, m.sum(dim=0, dtype=torch.float64) / self.n

    def cross_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy as log-sum-exp minus the label's logit: the line search takes it
        at every step length, and this costs half of a log-softmax times the one-hot labels."""
        picked = logits.gather(1, self.labels).sum()
        return (torch.logsumexp(logits, dim=1).sum() - picked) / self.n


def solve_path(
    objective: DeviceObjective,
    variances: torch.Tensor,
    Cs: Sequence[float],
    start: Start,
    tol: float,
    max_iter: int,
    on_solution: Callable[[DeviceSolution], None] | None = None,
) -> list[DeviceSolution]:
    """Every C in order: ``queue_path``, then one read of every gradient norm, and further
    rounds for each C still above ``tol`` until it converges or ``max_iter`` Newton steps."""
    newton_round = NewtonRound(objective, variances, tol)
    solutions = queue_path(newton_round, Cs, start, max_iter, on_solution)
    for index in _unconverged(solutions, tol):
        solutions[index] = _finish(newton_round, solutions[index], tol, max_iter)
    return solutions


def queue_path(
    newton_round: NewtonRound,
    Cs: Sequence[float],
    start: Start,
    max_iter: int,
    on_solution: Callable[[DeviceSolution], None] | None = None,
) -> list[DeviceSolution]:
    """One round (at most ``max_iter`` steps) for every C, queued on the device without reading
    anything back.

    ``start(C)`` gives the starting point from the solutions so far; ``on_solution`` sees each
    C's solution (still on the device) as soon as it is queued, which is how the caller builds
    warm starts.
    """
    solutions = []
    for C in Cs:
        solutions.append(newton_round(C, *start(C), max_iter))
        if on_solution is not None:
            on_solution(solutions[-1])
    return solutions


class NewtonRound:
    """``NEWTON_STEPS`` masked Newton-CG steps for one C.

    On CUDA the round is captured once as a CUDA graph (capturing waits for the device, so it
    happens here, before any path loop) and replayed for every C: one launch instead of a few
    thousand small kernels, whose launch cost would otherwise dominate LP-sized problems.
    """

    def __init__(self, objective: DeviceObjective, variances: torch.Tensor, tol: float) -> None:
        self.objective = objective
        self.variances = variances
        self.tol = tol
        self._graph: torch.cuda.CUDAGraph | None = None
        if objective.z.is_cuda:
            self._capture()

    def __call__(
        self, C: float, coef: torch.Tensor, intercept: torch.Tensor, steps_left: int
    ) -> DeviceSolution:
        """At most ``steps_left`` (and ``NEWTON_STEPS``) Newton steps from (coef, intercept)."""
        penalty = 1.0 / (C * self.objective.n)
        if self._graph is None:
            penalty_tensor = torch.full((), penalty, dtype=torch.float64, device=coef.device)
            left = torch.full((), steps_left, dtype=torch.int64, device=coef.device)
            found = _newton_steps(
                self.objective, self.variances, penalty_tensor, coef, intercept, left, self.tol
            )
        else:
            self._penalty.fill_(penalty)
            self._coef.copy_(coef)
            self._intercept.copy_(intercept)
            self._steps_left.fill_(steps_left)
            self._graph.replay()
            found = tuple(value.clone() for value in self._outputs)
        return DeviceSolution(C, *found)

    def _capture(self) -> None:
        device = self.objective.z.device
        k, r = self.objective.onehot.shape[1], self.objective.z.shape[1]
        self._penalty = torch.ones((), dtype=torch.float64, device=device)
        self._coef = torch.zeros(k, r, dtype=torch.float64, device=device)
        self._intercept = torch.zeros(k, dtype=torch.float64, device=device)
        self._steps_left = torch.full((), NEWTON_STEPS, dtype=torch.int64, device=device)
        inputs = (
            self.objective,
            self.variances,
            self._penalty,
            self._coef,
            self._intercept,
            self._steps_left,
        )
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            _newton_steps(*inputs, self.tol)
        torch.cuda.current_stream(device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._outputs = _newton_steps(*inputs, self.tol)


def _unconverged(solutions: list[DeviceSolution], tol: float) -> list[int]:
    norms = torch.stack([s.grad_max for s in solutions]).cpu()
    return [i for i, norm in enumerate(norms.tolist()) if norm > tol]


def _finish(
    newton_round: NewtonRound, solution: DeviceSolution, tol: float, max_iter: int
) -> DeviceSolution:
    """Further rounds for one C, reading its gradient norm and step count after each, until
    it converges, stalls (a round takes no step) or has taken ``max_iter`` Newton steps."""
    taken = int(solution.iterations)
    while float(solution.grad_max) > tol and taken < max_iter:
        more = newton_round(solution.C, solution.coef, solution.intercept, max_iter - taken)
        steps = int(more.iterations)
        more.iterations = more.iterations + solution.iterations
        solution, taken = more, taken + steps
        if steps == 0:
            break
    return solution


def _newton_steps(
    objective: DeviceObjective,
    variances: torch.Tensor,
    penalty: torch.Tensor,
    coef: torch.Tensor,
    intercept: torch.Tensor,
    steps_left: torch.Tensor,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The round's arithmetic: (coef, intercept, Newton steps taken, final max |gradient|);
    a step is taken while the gradient is above ``tol`` and fewer than ``steps_left`` were."""
    current = objective.evaluate(coef, intercept, penalty)
    iterations = torch.zeros((), dtype=torch.int64, device=coef.device)
    for _ in range(NEWTON_STEPS):
        active = (current["grad_max"] > tol) & (iterations < steps_left)
        s_coef, s_int = _cg_direction(objective, current, variances, penalty, tol)
        moved = objective.z @ s_coef.T + s_int
        full = objective.at_logits(current["logits"] + moved, coef + s_coef, penalty)
        step = _line_search(objective, current, full, moved, coef, s_coef, s_int, penalty)
        step = torch.where(active, step, torch.zeros_like(step))
        coef = coef + step * s_coef
        intercept = intercept + step * s_int
        iterations = iterations + (step > 0).to(torch.int64)
        current = objective.evaluate(coef, intercept, penalty)
    return coef, intercept, iterations, current["grad_max"]


def _cg_direction(
    objective: DeviceObjective,
    current: dict,
    variances: torch.Tensor,
    penalty: torch.Tensor,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Preconditioned CG on H s = -g for ``CG_STEPS`` iterations, frozen once it is done.

    CG is done when its residual (the gradient the quadratic model predicts after the step) is
    below the forcing target, or when it meets non-positive curvature; then its step size is
    zero. If the very first direction has non-positive curvature the preconditioned gradient is
    returned, as the CPU solver does.
    """
    p32, grad_max = current["p32"], current["grad_max"]
    curvature = current["curvature"].clamp_min(CURVATURE_FLOOR)
    diag_coef = curvature[:, None] * variances[None, :] + penalty
    target = cg_target(grad_max, tol)
    r_coef, r_int = -current["g_coef"], -current["g_int"]
    z_coef, z_int = r_coef / diag_coef, r_int / curvature
    first_coef, first_int = z_coef, z_int
    p_coef, p_int = z_coef, z_int
    x_coef, x_int = torch.zeros_like(r_coef), torch.zeros_like(r_int)
    rz = (r_coef * z_coef).sum() + (r_int * z_int).sum()
    running = grad_max > tol
    first_positive = None
    for _ in range(CG_STEPS):
        h_coef, h_int = objective.hessian_times(p32, p_coef, p_int, penalty)
        along = (p_coef * h_coef).sum() + (p_int * h_int).sum()
        positive = along > 0
        if first_positive is None:
            first_positive = positive
        running = running & positive
        alpha = torch.where(running, rz / torch.where(positive, along, 1.0), 0.0)
        x_coef, x_int = x_coef + alpha * p_coef, x_int + alpha * p_int
        r_coef, r_int = r_coef - alpha * h_coef, r_int - alpha * h_int
        residual = torch.maximum(r_coef.abs().max(), r_int.abs().max())
        running = running & (residual > target)
        z_coef, z_int = r_coef / diag_coef, r_int / curvature
        rz_next = (r_coef * z_coef).sum() + (r_int * z_int).sum()
        beta = torch.where(running, rz_next / torch.where(rz != 0, rz, 1.0), 0.0)
        p_coef, p_int = z_coef + beta * p_coef, z_int + beta * p_int
        rz = rz_next
    x_coef = torch.where(first_positive, x_coef, first_coef)
    x_int = torch.where(first_positive, x_int, first_int)
    return x_coef, x_int


def cg_target(grad_max: torch.Tensor, tol: float) -> torch.Tensor:
    """``newton_rules.cg_target`` on a device tensor (no host read)."""
    return torch.clamp(
        torch.clamp(grad_max.sqrt(), max=FORCING_MAX) * grad_max,
        min=RESIDUAL_FRACTION_OF_TOL * tol,
    )


def _line_search(
    objective: DeviceObjective,
    current: dict,
    full: dict,
    moved: torch.Tensor,
    coef: torch.Tensor,
    s_coef: torch.Tensor,
    s_int: torch.Tensor,
    penalty: torch.Tensor,
) -> torch.Tensor:
    """The longest of ``STEP_LENGTHS`` that satisfies Armijo, or the full step (evaluated as
    ``full``) when its loss is flat to rounding and its gradient smaller, chosen on the device;
    zero when no step qualifies. ``moved``: the change of the logits along the full step."""
    steps = torch.tensor(STEP_LENGTHS, dtype=torch.float64, device=coef.device)
    cross_entropy = torch.stack(
        [objective.cross_entropy(current["logits"] + t * moved) for t in steps.unbind()]
    )
    cc, cs, ss = (coef * coef).sum(), (coef * s_coef).sum(), (s_coef * s_coef).sum()
    losses = cross_entropy + 0.5 * penalty * (cc + 2 * steps * cs + steps * steps * ss)
    slope = (current["g_coef"] * s_coef).sum() + (current["g_int"] * s_int).sum()
    loss = current["loss"]
    accepted = losses <= loss + ARMIJO * steps * slope
    rounding = ROUNDING * torch.clamp(loss.abs(), min=1.0)
    flat_helps = (full["loss"] <= loss + rounding) & (full["grad_max"] < current["grad_max"])
    accepted[0] = accepted[0] | flat_helps
    return torch.where(accepted, steps, torch.zeros_like(steps)).max()
