"""``lp``: linear probing on frozen features, over the regularisation path."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, PositiveFloat, field_validator

from lpft.errors import CheckpointError
from lpft.io import atomic_torch_save
from lpft.methods.base import Candidate, LinearHead, Method, MethodContext, Selected
from lpft.registry import METHODS
from lpft.training.distributed import is_main_process
from lpft.training.evaluate import accuracy
from lpft.training.features import ForwardOutputs
from lpft.training.logreg import LogisticRegressionPath, predict_logits
from lpft.training.official_lp import OFFICIAL_MAX_ITER, official_lp_path
from lpft.validation import StrictModel, distinct

HEADS = "heads.pt"


def default_c_grid() -> list[float]:
    """Inverse regularisation strengths: the paper's range [1e-7, 1e2], 6 values per decade."""
    return [float(c) for c in np.logspace(-7, 2, 55)]


class LinearProbeOptions(StrictModel):
    """L2-regularised multinomial logistic regression on frozen features."""

    C: list[PositiveFloat] = Field(default_factory=default_c_grid, min_length=1)
    standardize: Literal["scalar", "none"] = "scalar"
    # "official": the official code's recipe through scikit-learn (warm-started L-BFGS capped
    # at 20 iterations per C, scalar standardisation); the others solve each C to convergence.
    solver: Literal["auto", "newton", "newton-cg", "lbfgs", "official"] = "auto"
    # "augmented": fit per seed on one pass of ID train through the training transform
    # (augmentation seeded by the seed), as the official code does; "eval": one fit on the
    # un-augmented features serves every seed.
    train_features: Literal["eval", "augmented"] = "eval"
    tol: float = Field(1e-7, gt=0, le=1e-2)
    max_iter: int = Field(1000, ge=1)

    @field_validator("C")
    @classmethod
    def _sorted_unique(cls, grid: list[float]) -> list[float]:
        return sorted(distinct(grid))


@METHODS.register("lp")
class LinearProbe(Method):
    name = "lp"
    options_model = LinearProbeOptions

    def seed_dependent(self, options: LinearProbeOptions) -> bool:
        return options.train_features == "augmented"

    def cells(self, options: LinearProbeOptions) -> list[dict[str, float]]:
        return [{}]

    def sweep_axes(self, options: LinearProbeOptions) -> tuple[str, ...]:
        return ("C",)

    def quick_options(self, options: LinearProbeOptions) -> dict[str, Any]:
        return {"C": options.C[::3]}

    def fit(
        self,
        ctx: MethodContext,
        options: LinearProbeOptions,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
        required: Mapping[str, Selected],
    ) -> list[Candidate]:
        train = self.train_features(ctx, options, seed)
        val = ctx.features.get("id_val")
        task = ctx.progress.add_task("LP sweep over C", total=len(options.C))
        solutions, infos = self.solve_path(
            ctx, options, train, seed, on_step=lambda: ctx.progress.advance(task)
        )
        ctx.progress.remove_task(task)
        val_features = val.features.to(ctx.device)
        candidates = []
        for index, (solution, info) in enumerate(zip(solutions, infos, strict=True)):
            logits = predict_logits(
                val_features, solution.weight.to(ctx.device), solution.bias.to(ctx.device)
            )
            candidates.append(
                Candidate(
                    hparams={"C": solution.C},
                    id_val=accuracy(logits, val.labels),
                    kind="head",
                    artifact=HEADS,
                    index=index,
                    info=info,
                )
            )
        if is_main_process():
            save_heads(cell_dir, solutions)
        return candidates

    def train_features(
        self, ctx: MethodContext, options: LinearProbeOptions, seed: int
    ) -> ForwardOutputs:
        if options.train_features == "augmented":
            return ctx.features.augmented("id_train", seed)
        return ctx.features.get("id_train")

    def solve_path(
        self,
        ctx: MethodContext,
        options: LinearProbeOptions,
        train: ForwardOutputs,
        seed: int,
        on_step: Callable[[], None],
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """Every C's head (raw-feature coordinates) and its solver facts, by ``options.solver``."""
        if options.solver == "official":
            solutions = official_lp_path(
                train.features,
                train.labels,
                ctx.benchmark.num_classes,
                options.C,
                seed=seed,
                on_step=lambda _s: on_step(),
            )
            infos = [
                {"solver": "official", "iterations": s.iterations, "converged": s.converged}
                for s in solutions
            ]
            return solutions, infos
        path = LogisticRegressionPath(
            train.features.to(ctx.device),
            train.labels.to(ctx.device),
            ctx.benchmark.num_classes,
            standardize=options.standardize,
            tol=options.tol,
            max_iter=options.max_iter,
            solver=options.solver,
        )
        solutions = path.fit_path(options.C, on_step=lambda _s: on_step())
        infos = [
            {
                "solver": path.solver,
                "iterations": s.iterations,
                "converged": s.converged,
                "grad_max": s.grad_max,
            }
            for s in solutions
        ]
        return solutions, infos

    def predictors(
        self, ctx: MethodContext, cell_dir: Path, candidates: list[Candidate]
    ) -> Iterator[LinearHead]:
        """Every candidate's head from one read of ``heads.pt``."""
        weights, biases = load_heads(cell_dir)
        for candidate in candidates:
            yield LinearHead(weights[candidate.index], biases[candidate.index])

    def describe(self, options: LinearProbeOptions) -> dict[str, str]:
        return {
            "batchnorm": "frozen",
            "grid": f"C: {len(options.C)} values",
            "solver": solver_description(options),
            "train_features": options.train_features,
        }


def solver_description(options: LinearProbeOptions) -> str:
    if options.solver == "official":
        return f"official (scikit-learn L-BFGS, warm start, {OFFICIAL_MAX_ITER} iterations per C)"
    return f"exact ({options.solver}, gradient <= {options.tol:g})"


def save_heads(cell_dir: Path, solutions: list[Any]) -> None:
    """Every C's head in one file (written by one process under torchrun)."""
    atomic_torch_save(
        Path(cell_dir) / HEADS,
        {
            "C": torch.tensor([s.C for s in solutions], dtype=torch.float64),
            "weight": torch.stack([s.weight.cpu() for s in solutions]),
            "bias": torch.stack([s.bias.cpu() for s in solutions]),
        },
    )


def load_heads(cell_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every C's (weight, bias) of an LP cell, stacked, in raw-feature coordinates."""
    path = Path(cell_dir) / HEADS
    try:
        heads = torch.load(path, map_location="cpu", weights_only=True)
        return heads["weight"], heads["bias"]
    except (OSError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: LP heads unreadable ({type(exc).__name__}); delete {path.parent} to refit LP"
        ) from None
