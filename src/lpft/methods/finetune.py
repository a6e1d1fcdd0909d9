"""``ft`` (full fine-tuning from a fresh head) and ``lpft`` (fine-tuning from the LP head)."""

from __future__ import annotations

from pathlib import Path

import torch

from lpft.config import FineTuneOptions, LPFTOptions
from lpft.engine.runtime import derive_seed
from lpft.engine.trainer import BEST, FineTuner
from lpft.methods.base import Candidate, Method
from lpft.methods.lp import load_head
from lpft.methods.registry import METHODS
from lpft.models.backbone import Classifier


@METHODS.register("ft")
class FineTune(Method):
    name = "ft"
    options_model = FineTuneOptions

    def cells(self, options: FineTuneOptions) -> list[dict[str, float]]:
        return [{"lr": lr} for lr in options.lrs]

    def init_head(self, ctx, model: Classifier, options: FineTuneOptions, seed: int) -> None:
        """PyTorch's default initialisation (already applied, seeded) or zeros."""
        if options.head_init == "zero":
            torch.nn.init.zeros_(model.head.weight)
            torch.nn.init.zeros_(model.head.bias)

    def fit(
        self,
        ctx,
        options: FineTuneOptions,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
    ) -> list[Candidate]:
        torch.manual_seed(derive_seed(seed, "init"))
        model = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
        self.init_head(ctx, model, options, seed)
        task = ctx.progress.add_task(f"{ctx.current_label} lr={hparams['lr']:g}", total=None)
        trainer = FineTuner(
            model,
            options,
            hparams["lr"],
            ctx.train_dataset(seed),
            ctx.eval_loader("id_val"),
            ctx.device,
            cell_dir,
            seed,
            num_workers=ctx.config.num_workers,
            autocast_dtype=ctx.autocast_dtype,
            on_step=lambda done, total: ctx.progress.update(task, completed=done, total=total),
        )
        outcome = trainer.fit()
        ctx.progress.remove_task(task)
        return [
            Candidate(
                hparams=dict(hparams),
                id_val=outcome.best_val,
                kind="model",
                artifact=BEST,
                info={
                    "best_epoch": outcome.best_epoch,
                    "train_seconds": outcome.seconds,
                    "history": [vars(r) for r in outcome.history],
                },
            )
        ]

    def describe(self, options: FineTuneOptions) -> dict[str, str]:
        return {
            "batchnorm": options.batchnorm,
            "grid": "lr: " + ", ".join(f"{lr:g}" for lr in options.lrs),
        }


@METHODS.register("lpft")
class LinearProbeThenFineTune(FineTune):
    name = "lpft"
    options_model = LPFTOptions
    requires = ("lp",)

    def init_head(self, ctx, model: Classifier, options: FineTuneOptions, seed: int) -> None:
        """Start from the LP solution selected (on ID val) for this seed."""
        candidate, lp_dir = ctx.selected("lp", seed)
        weight, bias = load_head(lp_dir, candidate.index)
        with torch.no_grad():
            model.head.weight.copy_(weight.to(model.head.weight.dtype))
            model.head.bias.copy_(bias.to(model.head.bias.dtype))
