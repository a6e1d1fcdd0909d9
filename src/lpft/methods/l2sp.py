"""``l2sp``: fine-tuning pulled towards the pretrained weights (Li, Grandvalet and Davoine,
*Explicit inductive bias for transfer learning with convolutional networks*, ICML 2018).

The loss is cross-entropy + α/2·‖w − w₀‖² over the backbone's parameters (w₀ pretrained) +
β/2·‖head‖² over the new head's weight and bias. α is swept with the learning rate (two axes,
lr first); β is fixed.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, NonNegativeFloat, field_validator

from lpft.methods.finetune import FineTune, FineTuneOptions
from lpft.models.backbone import Classifier
from lpft.registry import METHODS
from lpft.training.trainer import LossTerm
from lpft.validation import distinct

DEFAULT_ALPHAS = [1e-3, 1e-2, 1e-1]
DEFAULT_BETA = 1e-2


class L2SPOptions(FineTuneOptions):
    """FT with an L2 penalty towards the pretrained backbone (α, a grid) and on the head (β)."""

    alphas: list[NonNegativeFloat] = Field(
        default_factory=lambda: list(DEFAULT_ALPHAS), min_length=1
    )
    beta: NonNegativeFloat = DEFAULT_BETA

    @field_validator("alphas")
    @classmethod
    def _unique_alphas(cls, alphas: list[float]) -> list[float]:
        return distinct(alphas)


class L2SPPenalty:
    """α/2·‖w − w₀‖² over the backbone's parameters + β/2·‖head‖², w₀ taken when built."""

    def __init__(self, model: Classifier, alpha: float, beta: float) -> None:
        self.alpha = alpha
        self.beta = beta
        self.anchors = [p.detach().clone() for p in model.backbone.parameters()]

    def __call__(self, model: Classifier) -> torch.Tensor:
        weights = list(model.backbone.parameters())
        if self.anchors[0].device != weights[0].device:
            self.anchors = [a.to(weights[0].device) for a in self.anchors]
        drift = sum((w - a).pow(2).sum() for w, a in zip(weights, self.anchors, strict=True))
        head = sum(p.pow(2).sum() for p in model.head.parameters())
        return 0.5 * self.alpha * drift + 0.5 * self.beta * head


@METHODS.register("l2sp")
class L2SP(FineTune):
    name = "l2sp"
    options_model = L2SPOptions
    defaults_from = "ft"

    def cells(self, options: L2SPOptions) -> list[dict[str, float]]:
        return [{"lr": lr, "alpha": alpha} for lr in options.lrs for alpha in options.alphas]

    def quick_options(self, options: L2SPOptions) -> dict[str, Any]:
        return {
            **super().quick_options(options),
            "alphas": [options.alphas[len(options.alphas) // 2]],
        }

    def loss_term(
        self, model: Classifier, options: L2SPOptions, hparams: dict[str, float | str]
    ) -> LossTerm | None:
        return L2SPPenalty(model, float(hparams["alpha"]), options.beta)

    def describe(self, options: L2SPOptions) -> dict[str, str]:
        described = super().describe(options)
        described["grid"] += "; alpha: " + ", ".join(f"{a:g}" for a in options.alphas)
        described["beta"] = f"{options.beta:g}"
        return described
