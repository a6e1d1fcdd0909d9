"""Simulator of Section 3 of the paper: LP, FT and LP-FT on a two-layer linear network.

It builds an instance (d, k < n < d, pretrained features eps-close to the truth), trains LP in
closed form and FT / LP-FT as gradient flow integrated to high accuracy, records ID and OOD loss,
feature distortion and balancedness over time, and evaluates a Theorem 3.1-style lower bound on
FT's OOD loss. ``run_theory`` ties it together; ``lpft theory`` is its command line.
"""

from lpft.theory.bounds import Theorem31Bound, cos_largest_principal_angle, theorem31_bound
from lpft.theory.dynamics import (
    FlowConfig,
    Trajectory,
    balancedness,
    fine_tune,
    id_loss,
    linear_probe,
    lp_then_fine_tune,
    ood_loss,
)
from lpft.theory.experiment import (
    TheoryConfig,
    TheoryReport,
    report_to_dict,
    run_theory,
    write_outputs,
)
from lpft.theory.setting import (
    Setting,
    SettingConfig,
    build_setting,
    initial_head,
    linear_probe_head,
)
from lpft.theory.sweeps import SWEEPS, SweepResult, default_sweep_values, sweep

__all__ = [
    "SWEEPS",
    "FlowConfig",
    "Setting",
    "SettingConfig",
    "SweepResult",
    "Theorem31Bound",
    "TheoryConfig",
    "TheoryReport",
    "Trajectory",
    "balancedness",
    "build_setting",
    "cos_largest_principal_angle",
    "default_sweep_values",
    "fine_tune",
    "id_loss",
    "initial_head",
    "linear_probe",
    "linear_probe_head",
    "lp_then_fine_tune",
    "ood_loss",
    "report_to_dict",
    "run_theory",
    "sweep",
    "theorem31_bound",
    "write_outputs",
]
