"""Principal angles and the Theorem 3.1 bound's behaviour in its ingredients."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lpft.theory import (
    SettingConfig,
    build_setting,
    cos_largest_principal_angle,
    initial_head,
    linear_probe_head,
    theorem31_bound,
)

BASE = SettingConfig(d=30, k=3, n=12, eps=0.0)


def test_cos_largest_principal_angle_known_cases() -> None:
    identity = np.eye(4)
    assert cos_largest_principal_angle(identity[:, :2], identity[:, :3]) == pytest.approx(1.0)
    assert cos_largest_principal_angle(identity[:, :2], identity[:, 1:3]) == pytest.approx(0.0)
    tilted = np.array([[1.0], [1.0], [0.0], [0.0]])
    assert cos_largest_principal_angle(tilted, identity[:, :1]) == pytest.approx(np.sqrt(0.5))
    assert cos_largest_principal_angle(identity[:, :3], identity[:, :2]) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bound_ingredients_for_perfect_features(seed: int) -> None:
    setting = build_setting(replace(BASE, seed=seed))
    head = initial_head(setting, "random", 0.5)
    bound = theorem31_bound(setting, head)
    aligned = float(head @ setting.rotation @ setting.true_head)
    assert bound.head_misalignment == pytest.approx(abs(1.0 - aligned**2), abs=1e-12)
    assert 0.0 < bound.cos_theta_max <= 1.0
    assert bound.sigma_min_features == pytest.approx(1.0)
    assert bound.feature_error < 1e-12
    assert bound.value > 0.0


def test_lp_head_has_no_bound_with_perfect_features() -> None:
    setting = build_setting(BASE)
    assert theorem31_bound(setting, linear_probe_head(setting)).value < 1e-20


def test_bound_vanishes_without_room_outside_the_id_span() -> None:
    setting = build_setting(replace(BASE, n=29))
    bound = theorem31_bound(setting, initial_head(setting, "zero"))
    assert bound.cos_theta_max == 0.0
    assert bound.value == 0.0


def test_bound_shrinks_as_eps_grows() -> None:
    values = [
        theorem31_bound(setting, initial_head(setting, "zero")).value
        for setting in (build_setting(replace(BASE, eps=eps)) for eps in (0.0, 0.02, 0.05))
    ]
    assert values[0] > values[1] > values[2]
