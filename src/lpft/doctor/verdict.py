"""From measurements to a recommendation, with a plain-language reading of each indicator.

The rule follows the paper's mechanism. Fine-tuning moves the features where the ID data lie;
when the target's features move less than the ID features (distortion asymmetry below 1), the
head FT learns is fitted to features the target does not share, and FT loses on the target: the
call is then the best of the methods that keep the pretrained features (LP, LP-FT, WiSE-FT) by
their probes' ID validation score, as the protocol would select. When the target's features move
at least as much as the ID ones, FT's changes carry over to the target and the call is FT. The
confidence is the probability that the asymmetry lies on the side of 1 it was measured on, from
its standard error: the bootstrap's over the inputs, and a training-noise term measured over
probe seeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

KEEP_FEATURES = ("lp", "lpft", "wise-ft")
# Seed-to-seed standard deviation of the asymmetry (the training noise one probe carries),
# pooled over three probe seeds on digits-shift with each shipped backbone: glyph-resnet 0.931,
# 0.952, 0.968; glyph-resnet-letters 1.065, 1.010, 1.049.
TRAINING_SE = 0.024


@dataclass
class TargetMeasures:
    """Per target set: distortion under the FT probe, coverage and agreement."""

    change_ratio: float
    change_ratio_se: float
    change_target: float
    change_id: float
    uncovered: float
    uncovered_id: float
    agreement: float | None = None
    agreement_id: float | None = None


@dataclass
class Measurements:
    """What the probes measured; ``id_score`` is each probe's ID validation score (accuracy,
    or 1 - loss / loss of predicting 0 for regression), ``None`` for a probe not run."""

    id_score: dict[str, float]
    targets: dict[str, TargetMeasures]

    @property
    def asymmetry(self) -> float:
        return sum(t.change_ratio for t in self.targets.values()) / len(self.targets)

    @property
    def asymmetry_se(self) -> float:
        """Sampling (bootstrap) and training noise together."""
        sampling = sum(t.change_ratio_se**2 for t in self.targets.values()) / len(self.targets) ** 2
        return math.sqrt(sampling + TRAINING_SE**2)


@dataclass
class Indicator:
    key: str
    name: str
    value: float
    reference: float | None
    reading: str
    points_to: str | None = None


@dataclass
class Recommendation:
    method: str
    confidence: float
    reason: str
    indicators: list[Indicator] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "recommendation": self.method,
            "confidence": self.confidence,
            "reason": self.reason,
            "indicators": [asdict(i) for i in self.indicators],
        }


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def best_keeping_features(id_score: dict[str, float]) -> str:
    """The feature-preserving method with the best probe ID score (first on ties)."""
    present = [m for m in KEEP_FEATURES if id_score.get(m) is not None]
    return max(present, key=lambda m: id_score[m])


def recommend(measurements: Measurements) -> Recommendation:
    asymmetry, se = measurements.asymmetry, measurements.asymmetry_se
    confidence = normal_cdf(abs(1.0 - asymmetry) / se)
    if asymmetry >= 1.0:
        method = "ft"
        reason = (
            f"under fine-tuning the target's features move {asymmetry:.2f}x as much as the ID "
            "features: FT's changes carry over to the target, so FT's ID gains should too"
        )
    else:
        method = best_keeping_features(measurements.id_score)
        reason = (
            f"under fine-tuning the target's features move only {asymmetry:.2f}x as much as the "
            "ID features: FT would fit its head to features the target does not share (feature "
            f"distortion); of the methods that keep the pretrained features, {method} has the "
            "best ID validation score"
        )
    return Recommendation(method, confidence, reason, indicators(measurements))


def indicators(m: Measurements) -> list[Indicator]:
    """Every indicator with its reading; ``points_to`` says which way it leans, if any."""
    found = [asymmetry_indicator(m), id_gain_indicator(m)]
    found += [coverage_indicator(name, t) for name, t in m.targets.items()]
    found += [
        agreement_indicator(name, t) for name, t in m.targets.items() if t.agreement is not None
    ]
    return found


def asymmetry_indicator(m: Measurements) -> Indicator:
    value = m.asymmetry
    per_set = ", ".join(
        f"{n} {t.change_target:.3f} / {t.change_id:.3f}" for n, t in m.targets.items()
    )
    if value < 1.0:
        reading = (
            f"FT moves the target's features less than the ID ones (relative change, target / "
            f"ID val: {per_set}): the paper's distortion, FT's head will not fit the target"
        )
    else:
        reading = (
            f"FT moves the target's features as much as the ID ones (relative change, target / "
            f"ID val: {per_set}): FT's changes reach the target"
        )
    return Indicator(
        "distortion_asymmetry",
        "distortion asymmetry (target / ID relative feature change)",
        value,
        1.0,
        reading,
        "ft" if value >= 1.0 else "keep features",
    )


def id_gain_indicator(m: Measurements) -> Indicator:
    gain = m.id_score["ft"] - m.id_score["lp"]
    if gain > 0:
        reading = f"short FT beats LP on ID val by {gain:+.3f}: the features leave ID room to gain"
    else:
        reading = (
            f"LP is already as good as short FT on ID val ({gain:+.3f}): the pretrained "
            "features suffice in distribution"
        )
    return Indicator("id_gain", "short FT - LP, ID val score", gain, 0.0, reading)


def coverage_indicator(name: str, t: TargetMeasures) -> Indicator:
    excess = t.uncovered - t.uncovered_id
    where = "more" if excess > 0 else "no more"
    meaning = "directions FT never trains" if excess > 0 else "the target lies where FT trains"
    reading = (
        f"{t.uncovered:.1%} of the target's feature energy lies outside the leading ID "
        f"directions (ID val: {t.uncovered_id:.1%}), {where} than ID data: {meaning}"
    )
    return Indicator(
        f"coverage:{name}",
        f"uncovered target energy ({name})",
        t.uncovered,
        t.uncovered_id,
        reading,
    )


def agreement_indicator(name: str, t: TargetMeasures) -> Indicator:
    drop = (t.agreement_id or 0.0) - t.agreement
    reading = (
        f"LP and short FT agree on {t.agreement:.1%} of the target (ID val: "
        f"{t.agreement_id:.1%}): "
        + ("their predictions part on the target" if drop > 0.02 else "about as on ID data")
    )
    return Indicator(
        f"agreement:{name}",
        f"LP / short-FT agreement ({name})",
        t.agreement,
        t.agreement_id,
        reading,
    )
