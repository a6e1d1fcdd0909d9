"""Mean and t-distribution confidence interval over seeds, as the paper reports."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

CONFIDENCE = 0.90


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean and half-width of the two-sided t interval; half-width is NaN for one value."""
    clean = [float(v) for v in values if not math.isnan(float(v))]
    n = len(clean)
    if n == 0:
        return {"mean": float("nan"), "half_width": float("nan"), "n": 0}
    mean = sum(clean) / n
    if n == 1:
        return {"mean": mean, "half_width": float("nan"), "n": 1}
    std = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    return {"mean": mean, "half_width": t * std / math.sqrt(n), "n": n}
