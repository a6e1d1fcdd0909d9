"""Final ID and OOD losses of LP, FT and LP-FT as one knob of the setting varies.

Every point redraws the instance from the same seed, so only the swept knob changes: B*, v*, U,
the direction of the feature error and the head direction are shared (and, for n, the first rows
of X). "Final" means at the end of the flow: when the ID loss has converged or at t_max.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lpft.errors import ConfigError
from lpft.theory.bounds import theorem31_bound
from lpft.theory.dynamics import FlowConfig, fine_tune, linear_probe, lp_then_fine_tune
from lpft.theory.setting import SettingConfig, build_setting

SWEEPS: tuple[str, ...] = ("eps", "n", "init_scale")


@dataclass(frozen=True)
class SweepResult:
    """Losses per method at each value of ``parameter``; ``ft_bound`` is Thm 3.1's bound."""

    parameter: str
    values: np.ndarray
    lp_id: np.ndarray
    ft_id: np.ndarray
    lpft_id: np.ndarray
    lp_ood: np.ndarray
    ft_ood: np.ndarray
    lpft_ood: np.ndarray
    ft_bound: np.ndarray

    @property
    def lp_to_ft_ood_ratio(self) -> np.ndarray:
        """L_ood(LP) / L_ood(FT), which Thm 3.2 says goes to 0 with eps."""
        return self.lp_ood / self.ft_ood


def default_sweep_values(config: SettingConfig) -> dict[str, np.ndarray]:
    """Grids that suit ``config``: eps over 3 decades, n across (k, d), head norm over 2.5."""
    n_values = np.unique(np.linspace(config.k + 1, config.d - 1, 6).round().astype(int))
    return {
        "eps": np.geomspace(1e-3, 0.3, 6),
        "n": n_values,
        "init_scale": np.geomspace(0.01, 3.0, 6),
    }


def sweep(
    config: SettingConfig,
    parameter: str,
    values: Sequence[float] | np.ndarray,
    flow: FlowConfig | None = None,
) -> SweepResult:
    """Run LP, FT (from ``config``'s head init) and LP-FT at each value of ``parameter``.

    Sweeping ``init_scale`` uses a random head, the only init the scale applies to.
    """
    if parameter not in SWEEPS:
        raise ConfigError(f"sweep must be one of {', '.join(SWEEPS)} (got {parameter!r})")
    if parameter == "init_scale":
        config = replace(config, head_init="random")
    flow = replace(flow or FlowConfig(), estimate_error=False)
    cast = int if parameter == "n" else float
    rows = [_final_losses(replace(config, **{parameter: cast(value)}), flow) for value in values]
    columns = np.array(rows).T
    return SweepResult(parameter, np.asarray(values), *columns)


def _final_losses(config: SettingConfig, flow: FlowConfig) -> tuple[float, ...]:
    setting = build_setting(config)
    lp = linear_probe(setting)
    ft = fine_tune(setting, setting.ft_head, flow)
    lpft = lp_then_fine_tune(setting, flow)
    bound = theorem31_bound(setting, setting.ft_head)
    return (
        lp.final_id_loss,
        ft.final_id_loss,
        lpft.final_id_loss,
        lp.final_ood_loss,
        ft.final_ood_loss,
        lpft.final_ood_loss,
        bound.value,
    )
