"""LP, FT and LP-FT dynamics: the invariants of the flow and Props 3.1/3.2, Thms 3.1/3.2."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from lpft.theory import (
    FlowConfig,
    SettingConfig,
    Trajectory,
    build_setting,
    fine_tune,
    initial_head,
    linear_probe,
    lp_then_fine_tune,
    sweep,
    theorem31_bound,
)

SEEDS = [0, 1, 2]
FLOW = FlowConfig(t_max=60.0, num_records=40)
BASE = SettingConfig(d=30, k=3, n=12, eps=0.1)


@cache
def _runs(seed: int, eps: float, head_init: str = "random", id_dim: int | None = None):
    config = replace(BASE, seed=seed, eps=eps, head_init=head_init, id_dim=id_dim)
    setting = build_setting(config)
    return (
        setting,
        linear_probe(setting),
        fine_tune(setting, setting.ft_head, FLOW),
        (lp_then_fine_tune(setting, FLOW)),
    )


def _complement_projector(inputs: np.ndarray) -> np.ndarray:
    return np.eye(inputs.shape[1]) - np.linalg.pinv(inputs) @ inputs


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("eps", "head_init", "id_dim"), [(0.0, "random", None), (0.1, "zero", None), (0.1, "random", 8)]
)
def test_ft_never_changes_features_outside_rowspace(
    seed: int, eps: float, head_init: str, id_dim: int | None
) -> None:
    setting, _, ft, lpft = _runs(seed, eps, head_init, id_dim)
    b0 = setting.pretrained_features
    outside = _complement_projector(setting.inputs)
    for trajectory in (ft, lpft):
        moved_outside = np.linalg.norm((trajectory.features - b0) @ outside, axis=(1, 2))
        assert moved_outside.max() / np.linalg.norm(b0) <= 1e-8
        assert trajectory.distortion_out.max() / np.linalg.norm(b0) <= 1e-8
    assert ft.distortion_in[-1] > 1e-2  # the features do move, inside rowspace(X)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_balancedness_is_conserved_within_reported_error(seed: int, eps: float) -> None:
    _, _, ft, lpft = _runs(seed, eps)
    for trajectory in (ft, lpft):
        assert trajectory.balancedness_drift.max() <= trajectory.balancedness_tolerance
        assert trajectory.balancedness_tolerance < 1e-4
        start = trajectory.balancedness[0]
        assert np.allclose(
            start,
            np.outer(trajectory.heads[0], trajectory.heads[0])
            - trajectory.features[0] @ trajectory.features[0].T,
        )


def test_reported_state_error_covers_a_tighter_reference() -> None:
    setting, _, ft, _ = _runs(0, 0.1)
    reference_flow = replace(FLOW, rtol=1e-13, atol=1e-15, estimate_error=False)
    reference = fine_tune(setting, setting.ft_head, reference_flow)
    steps = min(reference.times.size, ft.times.size) - 1
    assert np.allclose(reference.times[:steps], ft.times[:steps])
    gap = np.abs(reference.features[:steps] - ft.features[:steps]).max()
    assert gap <= ft.state_error
    assert ft.state_error < 1e-6


@pytest.mark.parametrize("seed", SEEDS)
def test_perfect_features_lp_and_lpft_exact_ft_is_not(seed: int) -> None:
    setting, lp, ft, lpft = _runs(seed, 0.0)
    assert lp.ood_loss.max() <= 1e-10
    assert lpft.ood_loss.max() <= 1e-10
    bound = theorem31_bound(setting, setting.ft_head)
    assert bound.value > 1e-4
    assert ft.ood_loss.min() >= bound.value
    assert ft.final_id_loss < 1e-12  # FT fits the ID data, yet stays wrong OOD


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("eps", [0.0, 0.02, 0.1])
@pytest.mark.parametrize("scale", [0.0, 0.3, 2.0])
def test_ft_ood_loss_stays_above_theorem31_bound(seed: int, eps: float, scale: float) -> None:
    setting = build_setting(replace(BASE, seed=seed, eps=eps))
    head = initial_head(setting, "random", scale)
    ft = fine_tune(setting, head, replace(FLOW, estimate_error=False))
    assert ft.ood_loss.min() >= theorem31_bound(setting, head).value


@pytest.mark.parametrize("seed", SEEDS)
def test_lp_to_ft_ood_ratio_shrinks_with_eps(seed: int) -> None:
    eps_values = [0.003, 0.01, 0.03, 0.1, 0.3]
    result = sweep(replace(BASE, seed=seed), "eps", eps_values, FLOW)
    assert np.all(np.diff(result.lp_to_ft_ood_ratio) > 0)
    assert result.lp_to_ft_ood_ratio[0] < 1e-3


@pytest.mark.parametrize("seed", SEEDS)
def test_ft_beats_lp_in_distribution_when_truth_is_outside_pretrained_span(seed: int) -> None:
    setting, lp, ft, lpft = _runs(seed, 0.1)
    b0 = setting.pretrained_features
    in_span = np.linalg.pinv(b0) @ b0
    assert np.linalg.norm(setting.true_predictor - in_span @ setting.true_predictor) > 1e-3
    assert lp.final_id_loss > 1e-6
    assert ft.final_id_loss < 1e-6 * lp.final_id_loss
    assert lpft.final_id_loss < 1e-6 * lp.final_id_loss


def test_lp_trajectory_is_the_least_squares_state() -> None:
    _, lp, _, lpft = _runs(0, 0.1)
    assert isinstance(lp, Trajectory)
    assert lp.times.tolist() == [0.0]
    assert np.allclose(lpft.heads[0], lp.heads[0])
    assert lp.final_ood_loss == pytest.approx(lpft.ood_loss[0])
