"""``wise-ft``: weight-space ensembling of the pretrained and a fine-tuned network (Wortsman et
al., *Robust fine-tuning of zero-shot models*, CVPR 2022).

θ(α) = (1 − α)·θ₀ + α·θ₁ for every floating-point tensor of the network, BatchNorm statistics
included: θ₀ is the pretrained backbone with the LP head selected for the seed, θ₁ the network
of ``base`` (FT by default) selected for the seed. No training of its own: each α on the grid is
a candidate, α is selected on ID val, and every α is evaluated, so the whole curve is reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator

from lpft.errors import ConfigError
from lpft.io import atomic_torch_save
from lpft.methods.base import Candidate, Method, MethodContext, Network, Selected
from lpft.methods.finetune import start_from_lp_head
from lpft.models.backbone import Classifier
from lpft.registry import METHODS, method_base_name
from lpft.training.distributed import is_main_process
from lpft.training.evaluate import accuracy
from lpft.training.features import forward_split
from lpft.validation import StrictModel, distinct

ENDPOINTS = "endpoints.pt"
State = dict[str, torch.Tensor]


def default_alphas() -> list[float]:
    """0, 0.1, ..., 1: the pretrained endpoint, nine mixtures, the fine-tuned endpoint."""
    return [step / 10 for step in range(11)]


class WiseFTOptions(StrictModel):
    """Interpolation between pretrained + LP head (α = 0) and a fine-tuned network (α = 1)."""

    alphas: list[float] = Field(default_factory=default_alphas, min_length=1)
    base: str = "ft"

    @field_validator("alphas")
    @classmethod
    def _sorted_in_unit_interval(cls, alphas: list[float]) -> list[float]:
        outside = [a for a in alphas if not 0.0 <= a <= 1.0]
        if outside:
            raise ValueError(f"every alpha must lie in [0, 1], got {outside[0]}")
        return sorted(distinct(alphas))

    @field_validator("base")
    @classmethod
    def _fine_tuned_method(cls, base: str) -> str:
        name = method_base_name(base)
        if name in ("lp", "wise-ft"):
            raise ValueError(f"base must be a method that fine-tunes a network, not '{base}'")
        if name not in METHODS.names():
            raise ValueError(f"unknown method '{base}' (valid: {', '.join(METHODS.names())})")
        return base


def interpolate(theta0: State, theta1: State, alpha: float) -> State:
    """(1 − α)·θ₀ + α·θ₁ for floating-point tensors (exactly θ₀ at α = 0 and θ₁ at α = 1);
    other tensors (BatchNorm's batch counters) are taken from θ₁."""
    return {
        key: (1.0 - alpha) * theta0[key] + alpha * value if value.is_floating_point() else value
        for key, value in theta1.items()
    }


@METHODS.register("wise-ft")
class WiseFT(Method):
    name = "wise-ft"
    options_model = WiseFTOptions

    def requirements(self, options: WiseFTOptions) -> tuple[str, ...]:
        return ("lp", options.base)

    def cells(self, options: WiseFTOptions) -> list[dict[str, float]]:
        return [{}]

    def sweep_axes(self, options: WiseFTOptions) -> tuple[str, ...]:
        return ("alpha",)

    def curve_axis(self, options: WiseFTOptions) -> str | None:
        return "alpha"

    def quick_options(self, options: WiseFTOptions) -> dict[str, Any]:
        return {"alphas": [0.0, 0.5, 1.0]}

    def fit(
        self,
        ctx: MethodContext,
        options: WiseFTOptions,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
        required: Mapping[str, Selected],
    ) -> list[Candidate]:
        theta0, theta1 = endpoints(ctx, options, required)
        if is_main_process():
            atomic_torch_save(Path(cell_dir) / ENDPOINTS, {"theta0": theta0, "theta1": theta1})
        val = ctx.eval_loader("id_val")
        candidates = []
        for index, alpha in enumerate(options.alphas):
            model = mixed_network(ctx, theta0, theta1, alpha)
            outputs = forward_split(
                model.backbone, val, ctx.device, model.head, autocast_dtype=ctx.autocast_dtype
            )
            candidates.append(
                Candidate(
                    hparams={"alpha": alpha},
                    id_val=accuracy(outputs.logits, outputs.labels),
                    kind="model",
                    artifact=ENDPOINTS,
                    index=index,
                )
            )
        return candidates

    def predictors(
        self, ctx: MethodContext, cell_dir: Path, candidates: list[Candidate]
    ) -> Iterator[Network]:
        saved = torch.load(Path(cell_dir) / ENDPOINTS, map_location="cpu", weights_only=True)
        for candidate in candidates:
            alpha = float(candidate.hparams["alpha"])
            yield Network(mixed_network(ctx, saved["theta0"], saved["theta1"], alpha))

    def release(self, cell_dir: Path, candidates: list[Candidate]) -> None:
        (Path(cell_dir) / ENDPOINTS).unlink(missing_ok=True)

    def describe(self, options: WiseFTOptions) -> dict[str, str]:
        return {
            "batchnorm": "interpolated",
            "grid": f"alpha: {len(options.alphas)} values",
            "base": options.base,
        }


def endpoints(
    ctx: MethodContext, options: WiseFTOptions, required: Mapping[str, Selected]
) -> tuple[State, State]:
    """θ₀ (pretrained backbone, selected LP head) and θ₁ (selected ``base`` network), on CPU."""
    fine_tuned = required[options.base].predictor
    if not isinstance(fine_tuned, Network):
        raise ConfigError(
            f"wise-ft: base '{options.base}' predicts with a {type(fine_tuned).__name__}, "
            "not a network to interpolate"
        )
    start = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
    start_from_lp_head(start, required)
    return cpu_state(start), cpu_state(fine_tuned.model)


def mixed_network(ctx: MethodContext, theta0: State, theta1: State, alpha: float) -> Classifier:
    model = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
    model.load_state_dict(interpolate(theta0, theta1, alpha))
    return model.to(ctx.device).eval()


def cpu_state(model: torch.nn.Module) -> State:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
