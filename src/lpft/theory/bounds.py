"""A lower bound on fine-tuning's OOD loss in the spirit of Theorem 3.1, valid for all times.

Notation: S = rowspace(X), P = projector onto S^perp, R = rowspace(B0), w* = B*^T v*, U the
rotation with E = B0 - U B*, eps = ||E||_2, c* = U v*, and C = B0 B0^T - v0 v0^T.

Two facts about the gradient flow hold at every time t:
  (a) B(t) P = B0 P (the gradient of B has its rows in S), so P B(t)^T v = P B0^T v for any v;
  (b) v v^T - B B^T = -C is conserved, hence ||B(t)^T v(t)||^2 = v^T C v + ||v||^4 with v = v(t).

Write c = c* and delta = ||v(t) - c||, e = sqrt(L_ood(t)) = ||w* - B(t)^T v(t)||.

Route 1, from (a) and w* = B0^T c - E^T c:
    e >= ||P (w* - B0^T v)|| >= s delta - eps ||v*||,
    s = cos(theta_max(R, S^perp)) * sigma_min(B0) <= sigma_k(P B0^T).
Route 2, from (b): h(v) = v^T C v + ||v||^4 - ||w*||^2 equals ||B^T v||^2 - ||w*||^2, and
|a^2 - W^2| >= G implies |a - W| >= sqrt(W^2 + G) - W, so e >= sqrt(W^2 + |h(v)|) - W with
W = ||w*||. Expanding h(c + u) with ||u|| = delta and p = ||c||^2 gives
    |h(v) - h(c)| <= D(delta) = ||2 C c + 4 p c|| delta + (||C||_2 + 6 p) delta^2
                                + 4 sqrt(p) delta^3 + delta^4,
so |h(v)| >= (H - D(delta))_+ with H = |h(c)|, the head's initial misalignment. For eps = 0,
H = | ||v*||^4 - (v0^T U v*)^2 |, which vanishes exactly when the head starts "balanced" with the
truth (as the LP head does).

Since delta is unknown, the bound takes the worst case over it:
    sqrt(L_ood(t)) >= min over delta >= 0 of max(s delta - eps ||v*||,
                                                  sqrt(W^2 + (H - D(delta))_+) - W),
attained where the increasing first route meets the decreasing second one. The reported bound
is this value clipped at 0 and squared. Every step is an inequality, so L_ood(t) >= bound holds
for any instance, head and time t >= 0; it is positive when cos(theta_max) > 0, H > 0 and eps is
small enough, which is the content of Theorem 3.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lpft.theory.setting import Setting

BISECTION_STEPS = 100


@dataclass(frozen=True)
class Theorem31Bound:
    """The lower bound on FT's OOD loss and the ingredients it is made of."""

    value: float
    cos_theta_max: float
    sigma_min_features: float
    feature_error: float
    head_misalignment: float


def cos_largest_principal_angle(first: np.ndarray, second: np.ndarray) -> float:
    """cos of the largest principal angle between span(first) and span(second) (bases as columns).

    It is min over unit u in span(first) of ||proj_second u||, i.e. 0 when span(first) has a
    direction orthogonal to span(second) (always the case if dim first > dim second).
    """
    if second.shape[1] < first.shape[1]:
        return 0.0
    first_q, _ = np.linalg.qr(first)
    second_q, _ = np.linalg.qr(second)
    singular = np.linalg.svd(second_q.T @ first_q, compute_uv=False)
    return float(min(singular.min(), 1.0))


def theorem31_bound(setting: Setting, head: np.ndarray) -> Theorem31Bound:
    """Lower bound on L_ood(v(t), B(t)) for all t of FT started from (head, B0)."""
    features = setting.pretrained_features
    cos_max = cos_largest_principal_angle(features.T, setting.id_complement_basis)
    sigma_min = float(np.linalg.svd(features, compute_uv=False).min())
    eps = setting.feature_error
    center = setting.rotation @ setting.true_head
    conserved = features @ features.T - np.outer(head, head)
    target_norm = float(np.linalg.norm(setting.true_predictor))
    center_sq = float(center @ center)
    routes = _Routes(
        slope=cos_max * sigma_min,
        offset=eps * float(np.linalg.norm(setting.true_head)),
        target_norm=target_norm,
        misalignment=abs(_energy_gap(center, conserved, target_norm)),
        gap_coefficients=(
            float(np.linalg.norm(2 * conserved @ center + 4 * center_sq * center)),
            float(np.linalg.norm(conserved, 2)) + 6 * center_sq,
            4 * np.sqrt(center_sq),
            1.0,
        ),
    )
    root_bound = routes.min_max()
    return Theorem31Bound(
        value=max(root_bound, 0.0) ** 2,
        cos_theta_max=cos_max,
        sigma_min_features=sigma_min,
        feature_error=eps,
        head_misalignment=routes.misalignment,
    )


def _energy_gap(head: np.ndarray, conserved: np.ndarray, target_norm: float) -> float:
    """h(v) = v^T C v + ||v||^4 - ||w*||^2 = ||B^T v||^2 - ||w*||^2 along the flow."""
    squared = float(head @ head)
    return float(head @ conserved @ head) + squared**2 - target_norm**2


@dataclass(frozen=True)
class _Routes:
    """The two lower bounds on sqrt(L_ood) as functions of delta = ||v(t) - U v*||."""

    slope: float
    offset: float
    target_norm: float
    misalignment: float
    gap_coefficients: tuple[float, float, float, float]

    def outside_span(self, delta: float) -> float:
        return self.slope * delta - self.offset

    def balancedness(self, delta: float) -> float:
        drift = sum(c * delta ** (i + 1) for i, c in enumerate(self.gap_coefficients))
        gap = max(self.misalignment - drift, 0.0)
        return float(np.sqrt(self.target_norm**2 + gap) - self.target_norm)

    def excess(self, delta: float) -> float:
        return self.outside_span(delta) - self.balancedness(delta)

    def min_max(self) -> float:
        """min over delta >= 0 of max(route 1, route 2); can be negative (no bound)."""
        if self.slope <= 0.0 or self.excess(0.0) >= 0.0:
            return min(self.outside_span(0.0), 0.0)
        lower, upper = 0.0, 1.0
        while self.excess(upper) < 0.0:
            lower, upper = upper, 2.0 * upper
        for _ in range(BISECTION_STEPS):
            middle = 0.5 * (lower + upper)
            lower, upper = (lower, middle) if self.excess(middle) >= 0.0 else (middle, upper)
        # The crossing lies in [lower, upper]; route 2 at upper and route 1 at lower are both
        # at most the min-max value, so the larger of them is still a valid bound.
        return max(self.outside_span(lower), self.balancedness(upper))
