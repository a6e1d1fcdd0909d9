"""Linear probing, and fine-tuning as gradient flow, in the two-layer linear setting.

The ID loss is the mean squared error L(v, B) = (1/n) ||X B^T v - y||^2. Its gradient flow is
    dv/dt = -(2/n) B X^T r,    dB/dt = -(2/n) v r^T X,    r = X B^T v - y,
integrated with scipy's DOP853 (8th order, adaptive) at tight tolerances. The same flow is solved
a second time at looser tolerances on the same time grid; the largest state difference between
the two solutions is reported as the error estimate of the accurate one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from lpft.theory.setting import Setting, linear_probe_head

ROUNDOFF_FACTOR = 64 * np.finfo(float).eps


@dataclass(frozen=True)
class FlowConfig:
    """How long and how accurately the gradient flow is integrated.

    Integration stops early once the ID loss falls below ``stop_loss`` times the loss of the
    zero predictor, since the flow then sits at a global minimum up to the solver tolerance.
    """

    t_max: float = 100.0
    num_records: int = 80
    first_record: float = 1e-3
    rtol: float = 1e-11
    atol: float = 1e-13
    check_rtol: float = 1e-9
    check_atol: float = 1e-11
    stop_loss: float = 1e-20
    estimate_error: bool = True

    def record_times(self) -> np.ndarray:
        """t = 0 followed by log-spaced times up to t_max."""
        later = np.geomspace(self.first_record, self.t_max, self.num_records - 1)
        return np.concatenate([[0.0], later])


@dataclass(frozen=True)
class Trajectory:
    """States and measurements of one method at the recorded times.

    ``distortion_in`` / ``distortion_out`` are ||(B - B0) P||_F with P the projector onto
    rowspace(X) / its complement; ``balancedness`` holds v v^T - B B^T (k x k) per time and
    ``balancedness_drift`` its Frobenius distance from the initial value.
    """

    method: str
    times: np.ndarray
    heads: np.ndarray
    features: np.ndarray
    id_loss: np.ndarray
    ood_loss: np.ndarray
    distortion_in: np.ndarray
    distortion_out: np.ndarray
    balancedness: np.ndarray
    balancedness_drift: np.ndarray
    state_error: float
    balancedness_tolerance: float
    evaluations: int

    @property
    def final_id_loss(self) -> float:
        return float(self.id_loss[-1])

    @property
    def final_ood_loss(self) -> float:
        return float(self.ood_loss[-1])


def id_loss(setting: Setting, head: np.ndarray, features: np.ndarray) -> float:
    """Mean squared error of v^T B x on the n ID examples."""
    residual = setting.inputs @ (features.T @ head) - setting.targets
    return float(residual @ residual / setting.config.n)


def ood_loss(setting: Setting, head: np.ndarray, features: np.ndarray) -> float:
    """Worst-case squared error over unit-norm inputs: ||B*^T v* - B^T v||^2."""
    gap = setting.true_predictor - features.T @ head
    return float(gap @ gap)


def balancedness(head: np.ndarray, features: np.ndarray) -> np.ndarray:
    """v v^T - B B^T, conserved by the gradient flow."""
    return np.outer(head, head) - features @ features.T


def linear_probe(setting: Setting) -> Trajectory:
    """LP: the least-squares head on frozen B0 (a single state, recorded at t = 0)."""
    head = linear_probe_head(setting)
    return _measure(
        setting,
        "LP",
        np.zeros(1),
        head[None, :],
        setting.pretrained_features[None, :, :],
        state_error=0.0,
        evaluations=0,
    )


def fine_tune(
    setting: Setting, head: np.ndarray, flow: FlowConfig | None = None, method: str = "FT"
) -> Trajectory:
    """FT: gradient flow on (v, B) jointly from (head, B0)."""
    flow = flow or FlowConfig()
    start = np.concatenate([head, setting.pretrained_features.ravel()])
    field = _vector_field(setting)
    accurate = _integrate(
        field,
        start,
        flow.record_times(),
        flow.rtol,
        flow.atol,
        _stop_event(setting, flow.stop_loss),
    )
    state_error = 0.0
    evaluations = accurate.nfev
    if flow.estimate_error:
        check = _integrate(field, start, accurate.t, flow.check_rtol, flow.check_atol, None)
        state_error = float(np.abs(check.y - accurate.y).max())
        evaluations += check.nfev
    k, d = setting.pretrained_features.shape
    return _measure(
        setting,
        method,
        accurate.t,
        accurate.y[:k].T,
        accurate.y[k:].T.reshape(-1, k, d),
        state_error=state_error,
        evaluations=evaluations,
    )


def lp_then_fine_tune(setting: Setting, flow: FlowConfig | None = None) -> Trajectory:
    """LP-FT: the same gradient flow started from the LP head."""
    return fine_tune(setting, linear_probe_head(setting), flow, method="LP-FT")


def _vector_field(setting: Setting):
    """Right-hand side of the flow, with X^T X and X^T y precomputed (one d x d product a call)."""
    scale = 2.0 / setting.config.n
    gram = scale * setting.inputs.T @ setting.inputs
    moment = scale * setting.inputs.T @ setting.targets
    k = setting.config.k

    def field(_t: float, state: np.ndarray) -> np.ndarray:
        head, features = state[:k], state[k:].reshape(k, -1)
        input_grad = gram @ (features.T @ head) - moment
        return np.concatenate([-(features @ input_grad), -(head[:, None] * input_grad).ravel()])

    return field


def _stop_event(setting: Setting, stop_loss: float):
    threshold = stop_loss * float(setting.targets @ setting.targets) / setting.config.n
    k = setting.config.k

    def converged(_t: float, state: np.ndarray) -> float:
        return id_loss(setting, state[:k], state[k:].reshape(k, -1)) - threshold

    converged.terminal = True
    converged.direction = -1
    return converged


def _integrate(field, start, times, rtol, atol, event):
    """DOP853 solution at ``times`` (cut at the stop event, which is then also recorded)."""
    solution = solve_ivp(
        field,
        (times[0], times[-1]),
        start,
        method="DOP853",
        t_eval=times,
        rtol=rtol,
        atol=atol,
        events=event,
    )
    if not solution.success:
        raise RuntimeError(f"gradient-flow integration failed: {solution.message}")
    if event is not None and solution.t_events[0].size:
        stop_time, stop_state = solution.t_events[0][0], solution.y_events[0][0]
        solution.t = np.append(solution.t, stop_time)
        solution.y = np.column_stack([solution.y, stop_state])
    return solution


def _measure(
    setting: Setting,
    method: str,
    times: np.ndarray,
    heads: np.ndarray,
    features: np.ndarray,
    state_error: float,
    evaluations: int,
) -> Trajectory:
    moved = features - setting.pretrained_features
    balance = np.einsum("ti,tj->tij", heads, heads) - features @ features.transpose(0, 2, 1)
    return Trajectory(
        method=method,
        times=times,
        heads=heads,
        features=features,
        id_loss=np.array([id_loss(setting, v, b) for v, b in zip(heads, features, strict=True)]),
        ood_loss=np.array([ood_loss(setting, v, b) for v, b in zip(heads, features, strict=True)]),
        distortion_in=np.linalg.norm(moved @ setting.id_span_basis, axis=(1, 2)),
        distortion_out=np.linalg.norm(moved @ setting.id_complement_basis, axis=(1, 2)),
        balancedness=balance,
        balancedness_drift=np.linalg.norm(balance - balance[0], axis=(1, 2)),
        state_error=state_error,
        balancedness_tolerance=_balancedness_tolerance(heads, features, state_error),
        evaluations=evaluations,
    )


def _balancedness_tolerance(heads: np.ndarray, features: np.ndarray, state_error: float) -> float:
    """How far v v^T - B B^T may drift given a state error e in every entry, plus roundoff.

    With ||dv|| <= sqrt(k) e and ||dB||_F <= sqrt(kd) e, the first-order change is at most
    2 ||v|| ||dv|| + 2 ||B||_2 ||dB||_F, and the second-order one ||dv||^2 + ||dB||_F^2.
    """
    k, d = features.shape[1:]
    head_error, feature_error = np.sqrt(k) * state_error, np.sqrt(k * d) * state_error
    head_norm = float(np.linalg.norm(heads, axis=1).max())
    feature_norm = float(np.linalg.norm(features, 2, axis=(1, 2)).max())
    propagated = 2 * (head_norm * head_error + feature_norm * feature_error)
    propagated += head_error**2 + feature_error**2
    roundoff = ROUNDOFF_FACTOR * (head_norm**2 + feature_norm**2) * k
    return float(propagated + roundoff)
