"""``ft``: full fine-tuning of backbone and a fresh linear head.

Subclasses change where the head starts (``init_head``), which parameters train at which rate
(``param_groups``) and what is added to the loss (``loss_term``); the loop is the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PositiveFloat, field_validator

from lpft.errors import ConfigError
from lpft.methods.base import Candidate, LinearHead, Method, MethodContext, Network, Selected
from lpft.models.backbone import Backbone, Classifier
from lpft.registry import METHODS
from lpft.training.distributed import is_main_process
from lpft.training.runtime import derive_seed
from lpft.training.trainer import BEST, LAST, FineTuner, LossTerm, ParamGroup, TrainingOptions
from lpft.validation import distinct

PAPER_FT_LRS = [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
QUICK_EPOCHS = 2


class FineTuneOptions(TrainingOptions):
    """End-to-end training of backbone and head over a learning-rate grid."""

    lrs: list[PositiveFloat] = Field(default_factory=lambda: list(PAPER_FT_LRS), min_length=1)
    # "lp": the LP head selected for the seed (as LP-FT; wise-ft's default base);
    # "zeroshot": the head a backbone with a text tower (CLIP) builds from the class names
    head_init: Literal["default", "zero", "lp", "zeroshot"] = "default"

    @field_validator("lrs")
    @classmethod
    def _unique_lrs(cls, lrs: list[float]) -> list[float]:
        return distinct(lrs)


@METHODS.register("ft")
class FineTune(Method):
    name = "ft"
    options_model = FineTuneOptions

    def cells(self, options: FineTuneOptions) -> list[dict[str, float]]:
        return [{"lr": lr} for lr in options.lrs]

    def quick_options(self, options: FineTuneOptions) -> dict[str, Any]:
        return {"epochs": QUICK_EPOCHS, "lrs": [options.lrs[len(options.lrs) // 2]]}

    def check(self, options: FineTuneOptions, backbone: Backbone) -> None:
        if options.head_init == "zeroshot" and not backbone.has_zeroshot_head():
            raise zeroshot_refusal(backbone, f"{self.name}: ")

    def requirements(self, options: FineTuneOptions) -> tuple[str, ...]:
        """``requires``, plus ``lp`` whenever the head starts from the LP solution."""
        from_lp = options.head_init == "lp" and "lp" not in self.requires
        return (*self.requires, "lp") if from_lp else self.requires

    def starts_from(self, options: FineTuneOptions) -> str | None:
        """``head_init`` when the head is one another method gives (``lp``, ``zeroshot``)."""
        return options.head_init if options.head_init in ("lp", "zeroshot") else None

    def init_head(
        self,
        model: Classifier,
        options: FineTuneOptions,
        required: Mapping[str, Selected],
    ) -> None:
        """PyTorch's default initialisation (already applied, seeded), zeros, or the LP head."""
        if options.head_init == "zero":
            torch.nn.init.zeros_(model.head.weight)
            torch.nn.init.zeros_(model.head.bias)
        elif options.head_init == "lp":
            start_from_lp_head(model, required)

    def start_head(
        self,
        model: Classifier,
        options: FineTuneOptions,
        required: Mapping[str, Selected],
        classes: list[str],
    ) -> None:
        """The zero-shot head from the class names (``head_init: zeroshot``), else
        ``init_head``."""
        if options.head_init == "zeroshot":
            copy_head(model, *zeroshot_head(model.backbone, classes))
        else:
            self.init_head(model, options, required)

    def param_groups(
        self, model: Classifier, options: FineTuneOptions, hparams: dict[str, float | str]
    ) -> list[ParamGroup]:
        """What trains, at which multiple of the learning rate: here, everything at 1x."""
        return [ParamGroup(list(model.parameters()))]

    def loss_term(
        self, model: Classifier, options: FineTuneOptions, hparams: dict[str, float | str]
    ) -> LossTerm | None:
        """A term added to the cross-entropy at each step; none for plain fine-tuning."""
        return None

    def fit(
        self,
        ctx: MethodContext,
        options: FineTuneOptions,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
        required: Mapping[str, Selected],
    ) -> list[Candidate]:
        return [self.train_candidate(ctx, options, hparams, seed, cell_dir, required)]

    def train_candidate(
        self,
        ctx: MethodContext,
        options: FineTuneOptions,
        hparams: dict[str, float | str],
        seed: int,
        cell_dir: Path,
        required: Mapping[str, Selected],
        subdir: str = "",
    ) -> Candidate:
        """Fine-tune one setting ``hparams`` (learning rate ``hparams["lr"]``) in ``cell_dir``
        (or its ``subdir``, for a cell that trains several candidates); its best epoch."""
        torch.manual_seed(derive_seed(seed, "init"))
        model = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
        self.start_head(model, options, required, ctx.benchmark.classes)
        label = " ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hparams.items()
        )
        title = f"{ctx.current_label} {label}"
        task = ctx.progress.add_task(title, total=None)

        def show_progress(done: int, total: int) -> None:
            speed = f"{trainer.images_per_second():,.0f} images/s"
            ctx.progress.update(task, completed=done, total=total, description=f"{title} {speed}")

        directory = Path(cell_dir) / subdir
        if is_main_process():
            directory.mkdir(parents=True, exist_ok=True)
        trainer = FineTuner(
            model,
            options,
            float(hparams["lr"]),
            ctx.train_dataset(seed),
            ctx.eval_loader("id_val"),
            ctx.device,
            directory,
            seed,
            num_workers=ctx.num_workers,
            autocast_dtype=ctx.autocast_dtype,
            on_step=show_progress,
            param_groups=self.param_groups(model, options, hparams),
            loss_term=self.loss_term(model, options, hparams),
        )
        outcome = trainer.fit()
        ctx.progress.remove_task(task)
        return Candidate(
            hparams=dict(hparams),
            id_val=outcome.best_val,
            kind="model",
            artifact=f"{subdir}/{BEST}" if subdir else BEST,
            info={
                "best_epoch": outcome.best_epoch,
                "diverged_at_epoch": outcome.diverged_at_epoch,
                "train_seconds": outcome.seconds,
                "epoch_seconds": outcome.epoch_seconds,
                "images_per_second": outcome.images_per_second,
                "history": [vars(r) for r in outcome.history],
            },
        )

    def predictors(
        self, ctx: MethodContext, cell_dir: Path, candidates: list[Candidate]
    ) -> Iterator[Network]:
        for candidate in candidates:
            model = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
            state = torch.load(
                Path(cell_dir) / candidate.artifact, map_location="cpu", weights_only=True
            )
            model.load_state_dict(state["model"])
            yield Network(model.to(ctx.device))

    def fit_recorded(self, cell_dir: Path) -> None:
        (Path(cell_dir) / LAST).unlink(missing_ok=True)

    def release(self, cell_dir: Path, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            (Path(cell_dir) / candidate.artifact).unlink(missing_ok=True)

    def describe(self, options: FineTuneOptions) -> dict[str, str]:
        return {
            "batchnorm": options.batchnorm,
            "grid": "lr: " + ", ".join(f"{lr:g}" for lr in options.lrs),
        }


def copy_head(model: Classifier, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        model.head.weight.copy_(weight.to(model.head.weight.dtype))
        model.head.bias.copy_(bias.to(model.head.bias.dtype))


def zeroshot_head(backbone: Backbone, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    head = backbone.zeroshot_head(classes)
    if head is None:
        raise zeroshot_refusal(backbone)
    return head


def zeroshot_refusal(backbone: Backbone, where: str = "") -> ConfigError:
    return ConfigError(
        f"{where}head_init: zeroshot needs a backbone with a text tower (an openclip: model); "
        f"{backbone.architecture} has none"
    )


def start_from_lp_head(model: Classifier, required: Mapping[str, Selected]) -> None:
    """Set ``model``'s head to the LP solution selected (on ID val) for this seed."""
    head = required["lp"].predictor
    if not isinstance(head, LinearHead):
        raise TypeError(f"a start from LP needs a linear head from 'lp', got {type(head).__name__}")
    copy_head(model, head.weight, head.bias)
