"""The doctor's rule on the two-layer linear simulator (``lpft.theory``), where the winner is
known: the method with the smallest worst-case OOD loss.

The measurements are the image probes' counterparts: ID score 1 - L_id / L_id(0) for LP, FT and
LP-FT; features B x of the ID inputs and of target inputs (isotropic Gaussian, the average
case of the worst-case OOD loss over the unit ball) before and after FT; coverage of the target
inputs by the ID inputs' span (the inputs of the fine-tuned layer B). Agreement, a
classification measure, has no counterpart here, and WiSE-FT is not simulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lpft.doctor import indicators
from lpft.doctor.verdict import Measurements, Recommendation, TargetMeasures, recommend
from lpft.theory import (
    FlowConfig,
    Setting,
    SettingConfig,
    Trajectory,
    build_setting,
    fine_tune,
    linear_probe,
    lp_then_fine_tune,
)

TARGET_INPUTS = 2000
TARGET_SEED = 1
# Methods whose OOD loss is within this factor of the best count as winners too (near ties).
TIE_FACTOR = 1.05
FAST_FLOW = FlowConfig(num_records=10, estimate_error=False)


@dataclass
class TheoryCase:
    """The doctor's call on one simulated instance against the realised OOD losses."""

    setting: SettingConfig
    recommendation: Recommendation
    ood_loss: dict[str, float]

    @property
    def winners(self) -> list[str]:
        best = min(self.ood_loss.values())
        return [m for m, loss in self.ood_loss.items() if loss <= best * TIE_FACTOR]

    @property
    def hit(self) -> bool:
        return self.recommendation.method in self.winners


def id_score(setting: Setting, trajectory: Trajectory) -> float:
    null_loss = float(np.mean(setting.targets**2))
    return 1.0 - trajectory.final_id_loss / null_loss


def theory_measurements(
    setting: Setting, trajectories: dict[str, Trajectory], targets: np.ndarray
) -> Measurements:
    """The doctor's measurements of one instance, with ``trajectories`` of lp, ft and lpft."""
    pretrained = torch.from_numpy(setting.pretrained_features)
    fine_tuned = torch.from_numpy(trajectories["ft"].features[-1])
    id_inputs, target_inputs = torch.from_numpy(setting.inputs), torch.from_numpy(targets)
    ratio, se = indicators.change_ratio(
        target_inputs @ pretrained.T,
        target_inputs @ fine_tuned.T,
        id_inputs @ pretrained.T,
        id_inputs @ fine_tuned.T,
    )
    target = TargetMeasures(
        change_ratio=ratio,
        change_ratio_se=se,
        change_target=indicators.relative_change(
            target_inputs @ pretrained.T, target_inputs @ fine_tuned.T
        ),
        change_id=indicators.relative_change(id_inputs @ pretrained.T, id_inputs @ fine_tuned.T),
        uncovered=indicators.uncovered_energy(id_inputs, target_inputs),
        uncovered_id=indicators.uncovered_energy(id_inputs, id_inputs),
    )
    scores = {key: id_score(setting, t) for key, t in trajectories.items()}
    return Measurements(scores, {"isotropic": target})


def theory_case(config: SettingConfig, flow: FlowConfig = FAST_FLOW) -> TheoryCase:
    """Simulate ``config``, apply the doctor's rule, and keep the realised OOD losses."""
    setting = build_setting(config.validate())
    trajectories = {
        "lp": linear_probe(setting),
        "ft": fine_tune(setting, setting.ft_head, flow),
        "lpft": lp_then_fine_tune(setting, flow),
    }
    targets = np.random.default_rng(TARGET_SEED).standard_normal((TARGET_INPUTS, config.d))
    recommendation = recommend(theory_measurements(setting, trajectories, targets))
    return TheoryCase(
        config, recommendation, {k: t.final_ood_loss for k, t in trajectories.items()}
    )
