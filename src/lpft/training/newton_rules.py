"""The rules every Newton-CG LP solver of lpft follows: in memory and streamed
(``lpft.training.newton_cg``) and on an accelerator (``lpft.training.device_newton``).

- Stopping test: the largest absolute gradient entry (float64) is at most ``tol``.
- CG on H s = -g stops once its residual (the gradient the quadratic model predicts after the
  step) is at most ``cg_target``: a superlinear forcing sequence, floored at a fraction of
  ``tol`` so that near the optimum one Newton step finishes the C. Curvatures are floored at
  ``CURVATURE_FLOOR`` in the diagonal preconditioner; a first CG direction of non-positive
  curvature returns the preconditioned gradient.
- Line search: the first of ``STEP_LENGTHS`` (1, 1/2, 1/4, ... down to ``MIN_STEP``) whose loss
  satisfies Armijo with constant ``ARMIJO``. Near the optimum the decrease can fall below the
  float64 resolution of the loss; the full step is then taken when its loss is flat to
  ``rounding_slack`` *and* its gradient is smaller than the current one (``flat_step_helps``).
  No step qualifying ends the C where it is.
"""

from __future__ import annotations

import math

import numpy as np

ARMIJO = 1e-4
MIN_STEP = 1e-12
STEP_LENGTHS = tuple(0.5**i for i in range(math.floor(math.log2(1 / MIN_STEP)) + 1))
FORCING_MAX = 0.1
RESIDUAL_FRACTION_OF_TOL = 0.25
CURVATURE_FLOOR = 1e-12
# A loss within this many float64 units in the last place (of max(|loss|, 1)) counts as flat.
ROUNDING_ULPS = 64
ROUNDING = ROUNDING_ULPS * float(np.finfo(np.float64).eps)


def rounding_slack(loss: float) -> float:
    """How far above ``loss`` a trial loss may lie and still count as unchanged to rounding."""
    return ROUNDING * max(abs(loss), 1.0)


def cg_target(grad_max: float, tol: float) -> float:
    """How small CG's residual must get at a point whose largest gradient entry is
    ``grad_max``."""
    return max(min(FORCING_MAX, math.sqrt(grad_max)) * grad_max, RESIDUAL_FRACTION_OF_TOL * tol)


def armijo_holds(trial_loss: float, loss: float, step: float, slope: float) -> bool:
    return trial_loss <= loss + ARMIJO * step * slope


def flat_step_helps(trial_loss: float, loss: float, trial_grad: float, grad_max: float) -> bool:
    """The full step's fallback: its loss unchanged to rounding and its gradient smaller."""
    return trial_loss <= loss + rounding_slack(loss) and trial_grad < grad_max


def converged(grad_max: float, tol: float) -> bool:
    return grad_max <= tol
