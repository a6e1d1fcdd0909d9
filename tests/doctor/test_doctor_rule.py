"""The doctor's indicators and rule: on exact cases, and on the theory simulator where the winner
is known."""

from __future__ import annotations

import pytest
import torch

from lpft.doctor.indicators import change_ratio, uncovered_energy
from lpft.doctor.theory import theory_case
from lpft.doctor.verdict import (
    TRAINING_SE,
    Measurements,
    TargetMeasures,
    normal_cdf,
    recommend,
)
from lpft.theory import SettingConfig


def test_uncovered_energy_is_the_share_outside_the_id_span() -> None:
    generator = torch.Generator().manual_seed(0)
    id_features = torch.zeros(200, 6)
    id_features[:, :3] = torch.randn(200, 3, generator=generator)
    inside = torch.zeros(100, 6)
    inside[:, :3] = torch.randn(100, 3, generator=generator)
    half = torch.randn(100, 6, generator=generator) * torch.tensor([1, 0, 0, 1, 0, 0.0])
    assert uncovered_energy(id_features, inside) == pytest.approx(0.0, abs=1e-9)
    assert uncovered_energy(id_features, half) == pytest.approx(
        float((half[:, 3] - half[:, 3].mean()).square().sum())
        / float((half - half.mean(0)).square().sum())
    )


def test_change_ratio_compares_relative_feature_change_on_target_and_id() -> None:
    before = torch.ones(50, 4)
    ratio, se = change_ratio(before, before * 1.1, before, before * 1.4)
    assert ratio == pytest.approx(0.25)
    assert se == pytest.approx(0.0, abs=1e-12)


def measurements(asymmetry: float, id_score: dict[str, float]) -> Measurements:
    target = TargetMeasures(asymmetry, 0.02, 0.1 * asymmetry, 0.1, 0.05, 0.03, 0.9, 0.95)
    return Measurements(id_score, {"target": target})


def test_target_features_that_lag_send_the_call_away_from_ft() -> None:
    scores = {"lp": 0.90, "ft": 0.93, "lpft": 0.91, "wise-ft": 0.92}
    lagging = recommend(measurements(0.8, scores))
    assert lagging.method == "wise-ft"  # best ID val among the feature-keeping methods
    assert lagging.confidence > 0.99
    following = recommend(measurements(1.05, scores))
    assert following.method == "ft"
    standard_error = (0.02**2 + TRAINING_SE**2) ** 0.5
    assert following.confidence == pytest.approx(normal_cdf(0.05 / standard_error))
    ties = recommend(measurements(0.9, {"lp": 0.9, "ft": 0.95, "lpft": 0.9, "wise-ft": 0.9}))
    assert ties.method == "lp"


def test_doctor_calls_the_theory_default_setting_right() -> None:
    """d=50, k=5, n=20, eps=0.05, random head: LP-FT has the smallest OOD loss, FT the
    largest (``lpft theory``); the doctor must call LP-FT, from ID data and unlabeled inputs."""
    case = theory_case(SettingConfig())
    assert case.winners == ["lpft"]
    assert case.ood_loss["ft"] > 100 * case.ood_loss["lpft"]
    assert case.recommendation.method == "lpft" and case.hit
    assert case.recommendation.indicators[0].value < 1.0
