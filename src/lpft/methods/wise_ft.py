"""``wise-ft``: weight-space ensembling of the pretrained and a fine-tuned network (Wortsman et
al., *Robust fine-tuning of zero-shot models*, CVPR 2022).

θ(α) = (1 − α)·θ₀ + α·θ₁ for every floating-point tensor of the network, BatchNorm statistics
included. θ₀ is the pretrained backbone with the LP head selected for the seed (``theta0: lp``)
or with the zero-shot head of a CLIP backbone (``theta0: zeroshot``); θ₁ is the network of
``base`` selected for the seed, which must be a fine-tune that *started from* θ₀ (the paper's
endpoints): by default ``ft@theta0``, FT with ``head_init`` set to ``theta0``, and a base that
starts elsewhere is refused before any work. No training of its own: each α on the grid is a
candidate, α is selected on ID val, and every α is evaluated, so the whole curve is reported;
the paper's fixed α = 0.5 is a row of its own (the companion variant ``wise-ft@fixed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, field_validator

from lpft.errors import ConfigError
from lpft.io import atomic_torch_save
from lpft.methods.base import Candidate, Method, MethodContext, Network, Selected
from lpft.methods.finetune import copy_head, start_from_lp_head, zeroshot_head
from lpft.models.backbone import Classifier
from lpft.registry import METHODS, method_base_name
from lpft.training.distributed import is_main_process
from lpft.training.evaluate import accuracy
from lpft.training.features import forward_split
from lpft.validation import StrictModel, distinct

ENDPOINTS = "endpoints.pt"
# The default base: FT with its head started as θ₀'s (``requirement_options``).
DEFAULT_BASE = "ft@theta0"
# The paper's fixed mixing coefficient, reported as a row of its own next to the selected α.
PAPER_ALPHA = 0.5
FIXED_LABEL = "fixed"
THETA0_NAMES = {"lp": "the LP head", "zeroshot": "the zero-shot head"}
State = dict[str, torch.Tensor]


def default_alphas() -> list[float]:
    """0, 0.1, ..., 1: the pretrained endpoint, nine mixtures, the fine-tuned endpoint."""
    return [step / 10 for step in range(11)]


class WiseFTOptions(StrictModel):
    """Interpolation between pretrained + LP head (α = 0) and a fine-tuned network (α = 1)."""

    alphas: list[float] = Field(default_factory=default_alphas, min_length=1)
    base: str = DEFAULT_BASE
    # θ₀'s head: the selected LP head, or the zero-shot head of a backbone with a text tower.
    theta0: Literal["lp", "zeroshot"] = "lp"
    # The α of the row listed next to this one (the companion ``KEY@fixed``); null for none.
    fixed_alpha: float | None = Field(PAPER_ALPHA, ge=0.0, le=1.0)

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
        return ("lp", options.base) if options.theta0 == "lp" else (options.base,)

    def requirement_options(self, options: WiseFTOptions) -> dict[str, dict[str, Any]]:
        """An unlisted base fine-tunes from θ₀: its head starts as θ₀'s."""
        return {options.base: {"head_init": options.theta0}}

    def check_requirements(
        self, options: WiseFTOptions, options_of: Callable[[str], BaseModel]
    ) -> None:
        """θ₁ must be a fine-tune that started from θ₀ (Wortsman et al.'s endpoints)."""
        base = options.base
        start = METHODS.get(method_base_name(base))().starts_from(options_of(base))
        if start == options.theta0:
            return
        where = THETA0_NAMES.get(start, f"'{start}'") if start else "a fresh head"
        raise ConfigError(
            f"wise-ft: base '{base}' starts from {where}, not from θ0 (the pretrained backbone "
            f"with {THETA0_NAMES[options.theta0]}); set methods.{base}.head_init: "
            f"{options.theta0}, or leave '{base}' out of the methods so wise-ft runs it from θ0"
        )

    def companions(self, key: str, options: WiseFTOptions) -> dict[str, dict[str, Any]]:
        """The paper's fixed α as a row of its own, on the same endpoints."""
        if options.fixed_alpha is None:
            return {}
        fixed = {"alphas": [options.fixed_alpha], "fixed_alpha": None}
        return {f"{key}@{FIXED_LABEL}": {**options.model_dump(), **fixed}}

    def cells(self, options: WiseFTOptions) -> list[dict[str, float]]:
        return [{}]

    def sweep_axes(self, options: WiseFTOptions) -> tuple[str, ...]:
        return ("alpha",)

    def axis_bounds(self, options: WiseFTOptions) -> dict[str, tuple[float, float]]:
        return {"alpha": (0.0, 1.0)}

    def curve_axis(self, options: WiseFTOptions) -> str | None:
        return "alpha"

    def quick_options(self, options: WiseFTOptions) -> dict[str, Any]:
        quick = [0.0, PAPER_ALPHA, 1.0]
        return {"alphas": quick} if len(options.alphas) > len(quick) else {}

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
        facts = {"endpoints": endpoint_facts(options, required)}
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
                    info=facts,
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
        fixed = len(options.alphas) == 1
        return {
            "batchnorm": "interpolated",
            "grid": f"alpha: {options.alphas[0]:g} fixed"
            if fixed
            else f"alpha: {len(options.alphas)} values",
            "base": options.base,
            "theta0": f"pretrained + {options.theta0} head",
        }


def endpoints(
    ctx: MethodContext, options: WiseFTOptions, required: Mapping[str, Selected]
) -> tuple[State, State]:
    """θ₀ (pretrained backbone, θ₀'s head) and θ₁ (selected ``base`` network), on CPU."""
    fine_tuned = required[options.base].predictor
    if not isinstance(fine_tuned, Network):
        raise ConfigError(
            f"wise-ft: base '{options.base}' predicts with a {type(fine_tuned).__name__}, "
            "not a network to interpolate"
        )
    start = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
    if options.theta0 == "zeroshot":
        copy_head(start, *zeroshot_head(start.backbone, ctx.benchmark.classes))
    else:
        start_from_lp_head(start, required)
    return cpu_state(start), cpu_state(fine_tuned.model)


def endpoint_facts(options: WiseFTOptions, required: Mapping[str, Selected]) -> dict[str, Any]:
    """What results.json records of the endpoints: θ₀'s head, θ₁'s selected candidate and the
    head θ₁'s fine-tuning started from (θ₀'s, which ``check_requirements`` ensured)."""
    theta0: dict[str, Any] = {"backbone": "pretrained", "head": options.theta0}
    if options.theta0 == "lp":
        theta0["hparams"] = required["lp"].candidate.hparams
    chosen = required[options.base].candidate
    theta1 = {"method": options.base, "hparams": chosen.hparams}
    if "best_epoch" in chosen.info:
        theta1["best_epoch"] = chosen.info["best_epoch"]
    return {"theta0": theta0, "theta1": theta1, "theta1_init": options.theta0}


def mixed_network(ctx: MethodContext, theta0: State, theta1: State, alpha: float) -> Classifier:
    model = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
    model.load_state_dict(interpolate(theta0, theta1, alpha))
    return model.to(ctx.device).eval()


def cpu_state(model: torch.nn.Module) -> State:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
