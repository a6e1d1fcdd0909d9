"""The overparameterized two-layer linear setting of Section 3 of the paper.

Inputs x in R^d, features B in R^{k x d}, head v in R^k, prediction v^T B x. The truth is
y = v*^T B* x with B* having orthonormal rows and ||v*|| = 1, so the true predictor
w* = B*^T v* has unit norm. The pretrained features are B0 = U B* + E with U a random k x k
rotation and ||E||_2 = eps, hence min_U ||B0 - U B*||_2 <= eps. The n < d ID inputs span the
subspace S = rowspace(X); fine-tuning can only move B inside S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from lpft.errors import ConfigError

HeadInit = Literal["random", "zero", "lp"]
HEAD_INITS: tuple[str, ...] = ("random", "zero", "lp")
ORTHONORMAL_TOL = 1e-10


@dataclass(frozen=True)
class SettingConfig:
    """Sizes and knobs of one instance; ``validate`` names any value out of range."""

    d: int = 50
    k: int = 5
    n: int = 20
    eps: float = 0.05
    id_dim: int | None = None
    head_init: HeadInit = "random"
    init_scale: float = 1.0
    seed: int = 0

    @property
    def input_dim(self) -> int:
        """Dimension of the subspace the ID inputs are drawn from (d when unconstrained)."""
        return self.d if self.id_dim is None else self.id_dim

    def validate(self) -> SettingConfig:
        _require(self.k >= 1, f"k must be >= 1 (got k={self.k})")
        _require(
            self.d >= self.k + 2,
            f"d must be >= k + 2 = {self.k + 2} so that k < n < d is possible (got d={self.d})",
        )
        _require(
            self.k < self.n < self.d,
            f"n must satisfy k < n < d, i.e. {self.k + 1} <= n <= {self.d - 1} "
            f"(got n={self.n} with k={self.k}, d={self.d})",
        )
        _require(
            math.isfinite(self.eps) and 0.0 <= self.eps < 1.0,
            f"eps must satisfy 0 <= eps < 1 so that B0 keeps rank k (got eps={self.eps})",
        )
        _require(
            self.k <= self.input_dim <= self.d,
            f"id_dim must satisfy k <= id_dim <= d, i.e. {self.k} <= id_dim <= {self.d} "
            f"(got id_dim={self.id_dim})",
        )
        _require(
            self.head_init in HEAD_INITS,
            f"head_init must be one of {', '.join(HEAD_INITS)} (got {self.head_init!r})",
        )
        _require(
            math.isfinite(self.init_scale) and self.init_scale >= 0.0,
            f"init_scale must be a finite number >= 0 (got init_scale={self.init_scale})",
        )
        return self


@dataclass(frozen=True)
class Setting:
    """One drawn instance: data, ground truth, pretrained features and the FT head init."""

    config: SettingConfig
    inputs: np.ndarray
    targets: np.ndarray
    true_features: np.ndarray
    true_head: np.ndarray
    rotation: np.ndarray
    perturbation: np.ndarray
    pretrained_features: np.ndarray
    head_direction: np.ndarray
    id_basis: np.ndarray

    @property
    def true_predictor(self) -> np.ndarray:
        """w* = B*^T v*, the predictor that is right on every input."""
        return self.true_features.T @ self.true_head

    @cached_property
    def _input_svd(self) -> tuple[np.ndarray, int]:
        _, singular, vt = np.linalg.svd(self.inputs, full_matrices=True)
        tol = singular[0] * max(self.inputs.shape) * np.finfo(float).eps
        return vt, int(np.sum(singular > tol))

    @property
    def id_span_basis(self) -> np.ndarray:
        """Orthonormal basis (d x rank) of S = rowspace(X), as columns."""
        vt, rank = self._input_svd
        return vt[:rank].T

    @property
    def id_complement_basis(self) -> np.ndarray:
        """Orthonormal basis (d x (d - rank)) of the complement of rowspace(X), as columns."""
        vt, rank = self._input_svd
        return vt[rank:].T

    @property
    def feature_error(self) -> float:
        """||B0 - U B*||_2 for the rotation U used to build B0 (equals eps up to roundoff)."""
        return float(
            np.linalg.norm(self.pretrained_features - self.rotation @ self.true_features, 2)
        )

    @property
    def ft_head(self) -> np.ndarray:
        """Head that fine-tuning starts from, as chosen by ``config.head_init``."""
        return initial_head(self, self.config.head_init, self.config.init_scale)


def linear_probe_head(setting: Setting) -> np.ndarray:
    """Least-squares head on the frozen pretrained features: argmin_v ||X B0^T v - y||^2."""
    design = setting.inputs @ setting.pretrained_features.T
    head, *_ = np.linalg.lstsq(design, setting.targets, rcond=None)
    return head


def initial_head(setting: Setting, kind: str, scale: float = 1.0) -> np.ndarray:
    """Head initialisation: ``random`` (norm exactly ``scale``), ``zero`` or ``lp``."""
    if kind == "random":
        return scale * setting.head_direction
    if kind == "zero":
        return np.zeros_like(setting.head_direction)
    if kind == "lp":
        return linear_probe_head(setting)
    raise ConfigError(f"head_init must be one of {', '.join(HEAD_INITS)} (got {kind!r})")


def build_setting(config: SettingConfig, id_basis: np.ndarray | None = None) -> Setting:
    """Draw an instance from ``config.seed``.

    The random pieces are drawn in a fixed order with the inputs last, row by row, so instances
    that differ only in eps, head scale or n share B*, v*, U, the direction of E, the head
    direction and (for n) their first rows of X. ``id_basis`` (d x m, orthonormal columns)
    confines the ID inputs to its span; by default a random subspace of dimension id_dim is
    used (all of R^d when id_dim is None, where the inputs are standard Gaussian).
    """
    config.validate()
    rng = np.random.default_rng(config.seed)
    d, k = config.d, config.k
    true_features = random_orthonormal(rng, d, k).T
    true_head = unit_vector(rng, k)
    rotation = random_orthonormal(rng, k, k)
    perturbation = spectral_scaled(rng.standard_normal((k, d)), config.eps)
    head_direction = unit_vector(rng, k)
    drawn_basis = random_orthonormal(rng, d, config.input_dim)
    basis = drawn_basis if id_basis is None else _checked_basis(id_basis, config)
    inputs = rng.standard_normal((config.n, basis.shape[1])) @ basis.T
    return Setting(
        config=config,
        inputs=inputs,
        targets=inputs @ (true_features.T @ true_head),
        true_features=true_features,
        true_head=true_head,
        rotation=rotation,
        perturbation=perturbation,
        pretrained_features=rotation @ true_features + perturbation,
        head_direction=head_direction,
        id_basis=basis,
    )


def random_orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Haar-distributed rows x cols matrix with orthonormal columns (rows >= cols)."""
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))


def unit_vector(rng: np.random.Generator, size: int) -> np.ndarray:
    vector = rng.standard_normal(size)
    return vector / np.linalg.norm(vector)


def spectral_scaled(matrix: np.ndarray, norm: float) -> np.ndarray:
    """``matrix`` rescaled to spectral norm ``norm``."""
    return matrix * (norm / np.linalg.norm(matrix, 2))


def _checked_basis(basis: np.ndarray, config: SettingConfig) -> np.ndarray:
    basis = np.asarray(basis, dtype=float)
    _require(
        basis.ndim == 2 and basis.shape[0] == config.d and config.k <= basis.shape[1] <= config.d,
        f"id_basis must have shape (d, m) with {config.k} <= m <= {config.d} "
        f"(got shape {basis.shape})",
    )
    gram_error = np.abs(basis.T @ basis - np.eye(basis.shape[1])).max()
    _require(gram_error <= ORTHONORMAL_TOL, "id_basis must have orthonormal columns")
    return basis


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
