"""One full simulator run: LP, FT and LP-FT on an instance, the Thm 3.1 bound, and the sweeps."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpft.errors import ConfigError
from lpft.io import atomic_write_json
from lpft.theory.bounds import Theorem31Bound, theorem31_bound
from lpft.theory.dynamics import (
    FlowConfig,
    Trajectory,
    fine_tune,
    linear_probe,
    lp_then_fine_tune,
)
from lpft.theory.plots import plot_distortion, plot_loss_curves, plot_sweeps
from lpft.theory.setting import Setting, SettingConfig, build_setting, linear_probe_head
from lpft.theory.sweeps import SWEEPS, SweepResult, default_sweep_values, sweep

JSON_NAME = "theory.json"


@dataclass(frozen=True)
class TheoryConfig:
    """Everything ``lpft theory`` runs: the instance, the integrator and which sweeps."""

    setting: SettingConfig = field(default_factory=SettingConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    sweeps: tuple[str, ...] = SWEEPS

    def validate(self) -> TheoryConfig:
        self.setting.validate()
        if not (math.isfinite(self.flow.t_max) and self.flow.t_max > self.flow.first_record):
            raise ConfigError(
                f"t_max must be finite and > {self.flow.first_record} (got t_max={self.flow.t_max})"
            )
        if self.flow.num_records < 2:
            raise ConfigError(f"num_records must be >= 2 (got {self.flow.num_records})")
        unknown = sorted(set(self.sweeps) - set(SWEEPS))
        if unknown:
            raise ConfigError(
                f"sweeps must be among {', '.join(SWEEPS)} (got {', '.join(unknown)})"
            )
        return self


@dataclass(frozen=True)
class TheoryReport:
    """Trajectories of the three methods, their bounds, the sweeps and the wall time."""

    config: TheoryConfig
    setting: Setting
    lp: Trajectory
    ft: Trajectory
    lpft: Trajectory
    ft_bound: Theorem31Bound
    lpft_bound: Theorem31Bound
    sweeps: dict[str, SweepResult]
    runtime_s: float

    def table_rows(self) -> list[dict[str, Any]]:
        """Final ID loss, final OOD loss and Thm 3.1 bound (FT-based methods only)."""
        return [
            _row(self.lp, None),
            _row(self.ft, self.ft_bound.value),
            _row(self.lpft, self.lpft_bound.value),
        ]


def run_theory(config: TheoryConfig | None = None) -> TheoryReport:
    """Run the instance of ``config`` and its sweeps."""
    config = (config or TheoryConfig()).validate()
    start = time.perf_counter()
    setting = build_setting(config.setting)
    grids = default_sweep_values(config.setting)
    return TheoryReport(
        config=config,
        setting=setting,
        lp=linear_probe(setting),
        ft=fine_tune(setting, setting.ft_head, config.flow),
        lpft=lp_then_fine_tune(setting, config.flow),
        ft_bound=theorem31_bound(setting, setting.ft_head),
        lpft_bound=theorem31_bound(setting, linear_probe_head(setting)),
        sweeps={
            name: sweep(config.setting, name, grids[name], config.flow) for name in config.sweeps
        },
        runtime_s=time.perf_counter() - start,
    )


def report_to_dict(report: TheoryReport) -> dict[str, Any]:
    """Every figure's data and the summary table, as plain JSON-ready values."""
    trajectories = (report.lp, report.ft, report.lpft)
    figures: dict[str, Any] = {
        "loss_curves": {
            **{t.method: _curve(t, "id_loss", "ood_loss") for t in trajectories},
            "ft_bound": report.ft_bound.value,
        },
        "distortion": {
            t.method: {
                **_curve(t, "distortion_in", "distortion_out", "balancedness_drift"),
                "balancedness_tolerance": t.balancedness_tolerance,
            }
            for t in (report.ft, report.lpft)
        },
    }
    figures["sweeps"] = {
        name: {
            **{key: value for key, value in asdict(result).items() if key != "parameter"},
            "lp_to_ft_ood_ratio": result.lp_to_ft_ood_ratio,
        }
        for name, result in report.sweeps.items()
    }
    document = {
        "config": {
            "setting": asdict(report.config.setting),
            "flow": asdict(report.config.flow),
            "sweeps": list(report.config.sweeps),
        },
        "table": report.table_rows(),
        "theorem_3_1": {"FT": asdict(report.ft_bound), "LP-FT": asdict(report.lpft_bound)},
        "integration": {t.method: _integration(t) for t in (report.ft, report.lpft)},
        "figures": figures,
        "runtime_s": report.runtime_s,
    }
    return _jsonable(document)


def write_outputs(report: TheoryReport, out_dir: Path) -> list[Path]:
    """Write the PNG figures and ``theory.json`` into ``out_dir`` (created if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = report.config.setting
    title = (
        f"d={config.d}, k={config.k}, n={config.n}, eps={config.eps:g}, "
        f"FT head: {config.head_init} (||v0||={np.linalg.norm(report.setting.ft_head):.3g})"
    )
    trajectories = [report.lp, report.ft, report.lpft]
    paths = [
        plot_loss_curves(trajectories, report.ft_bound.value, out_dir / "loss_curves.png", title),
        plot_distortion([report.ft, report.lpft], out_dir / "distortion.png", title),
    ]
    if report.sweeps:
        sweeps_title = f"{title}; each point retrained from the same seed"
        paths.append(
            plot_sweeps(list(report.sweeps.values()), out_dir / "sweeps.png", sweeps_title)
        )
    json_path = out_dir / JSON_NAME
    atomic_write_json(json_path, report_to_dict(report))
    return [*paths, json_path]


def _row(trajectory: Trajectory, bound: float | None) -> dict[str, Any]:
    return {
        "method": trajectory.method,
        "id_loss": trajectory.final_id_loss,
        "ood_loss": trajectory.final_ood_loss,
        "thm31_bound": bound,
    }


def _curve(trajectory: Trajectory, *names: str) -> dict[str, Any]:
    return {"times": trajectory.times, **{name: getattr(trajectory, name) for name in names}}


def _integration(trajectory: Trajectory) -> dict[str, float]:
    return {
        "t_end": float(trajectory.times[-1]),
        "state_error_estimate": trajectory.state_error,
        "balancedness_tolerance": trajectory.balancedness_tolerance,
        "max_balancedness_drift": float(trajectory.balancedness_drift.max()),
        "max_distortion_outside_rowspace": float(trajectory.distortion_out.max()),
        "rhs_evaluations": trajectory.evaluations,
    }


def _jsonable(value: Any) -> Any:
    """Arrays to lists, numpy scalars to Python ones, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
