"""Instance construction: shapes, the eps-closeness of B0, confinement of inputs, validation."""

from __future__ import annotations

import numpy as np
import pytest

from lpft.errors import ConfigError
from lpft.theory import SettingConfig, build_setting, initial_head, linear_probe_head

SMALL = SettingConfig(d=24, k=3, n=10, eps=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ground_truth_and_pretrained_features(seed: int) -> None:
    setting = build_setting(SettingConfig(d=24, k=3, n=10, eps=0.1, seed=seed))
    b_star, b0 = setting.true_features, setting.pretrained_features
    assert np.allclose(b_star @ b_star.T, np.eye(3), atol=1e-12)
    assert np.allclose(setting.rotation @ setting.rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.norm(b0 - setting.rotation @ b_star, 2) == pytest.approx(0.1, rel=1e-10)
    assert np.linalg.norm(setting.true_predictor) == pytest.approx(1.0)
    assert np.allclose(setting.targets, setting.inputs @ setting.true_predictor)


def test_same_seed_gives_same_instance_and_shared_pieces_across_eps() -> None:
    first, again = build_setting(SMALL), build_setting(SMALL)
    assert np.array_equal(first.inputs, again.inputs)
    other_eps = build_setting(SettingConfig(d=24, k=3, n=10, eps=0.01))
    assert np.array_equal(first.inputs, other_eps.inputs)
    assert np.allclose(first.perturbation / 0.1, other_eps.perturbation / 0.01)


def test_more_examples_extend_the_same_inputs() -> None:
    fewer = build_setting(SMALL)
    more = build_setting(SettingConfig(d=24, k=3, n=15, eps=0.1))
    assert np.array_equal(more.inputs[:10], fewer.inputs)


def test_inputs_confined_to_a_subspace() -> None:
    setting = build_setting(SettingConfig(d=24, k=3, n=10, id_dim=6))
    assert setting.id_span_basis.shape == (24, 6)
    outside = setting.inputs - setting.inputs @ setting.id_basis @ setting.id_basis.T
    assert np.abs(outside).max() < 1e-12


def test_given_subspace_basis_is_used() -> None:
    basis = np.eye(24)[:, :8]
    setting = build_setting(SettingConfig(d=24, k=3, n=10), id_basis=basis)
    assert np.abs(setting.inputs[:, 8:]).max() == 0.0


def test_head_initialisations() -> None:
    setting = build_setting(SMALL)
    assert np.linalg.norm(initial_head(setting, "random", 2.5)) == pytest.approx(2.5)
    assert not initial_head(setting, "zero").any()
    assert np.array_equal(initial_head(setting, "lp"), linear_probe_head(setting))


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"n": 3}, "n must satisfy k < n < d"),
        ({"n": 2}, "n must satisfy k < n < d"),
        ({"n": 24}, "n must satisfy k < n < d"),
        ({"k": 0}, "k must be >= 1"),
        ({"eps": -0.1}, "eps must satisfy 0 <= eps < 1"),
        ({"eps": 1.5}, "eps must satisfy 0 <= eps < 1"),
        ({"id_dim": 2}, "id_dim must satisfy k <= id_dim <= d"),
        ({"init_scale": -1.0}, "init_scale must be"),
        ({"head_init": "ones"}, "head_init must be one of"),
    ],
)
def test_bad_values_name_the_parameter_and_range(overrides: dict, names: str) -> None:
    config = SettingConfig(**{**SMALL.__dict__, **overrides})
    with pytest.raises(ConfigError, match=names):
        build_setting(config)


def test_bad_basis_is_rejected() -> None:
    with pytest.raises(ConfigError, match="orthonormal"):
        build_setting(SMALL, id_basis=2 * np.eye(24)[:, :6])
