"""``lp``: linear probing on frozen features, over the regularisation path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, PositiveFloat, field_validator

from lpft.errors import CheckpointError
from lpft.io import atomic_torch_save
from lpft.methods.base import Candidate, LinearHead, Method, MethodContext, Selected
from lpft.registry import METHODS
from lpft.training.evaluate import accuracy
from lpft.training.logreg import LogisticRegressionPath, predict_logits
from lpft.validation import StrictModel, distinct

HEADS = "heads.pt"


def default_c_grid() -> list[float]:
    """Inverse regularisation strengths: the paper's range [1e-7, 1e2], 6 values per decade."""
    return [float(c) for c in np.logspace(-7, 2, 55)]


class LinearProbeOptions(StrictModel):
    """L2-regularised multinomial logistic regression on frozen features."""

    C: list[PositiveFloat] = Field(default_factory=default_c_grid, min_length=1)
    standardize: Literal["scalar", "none"] = "scalar"
    solver: Literal["auto", "newton", "newton-cg", "lbfgs"] = "auto"
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
    seed_dependent = False

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
        train = ctx.features.get("id_train")
        val = ctx.features.get("id_val")
        device = ctx.device
        path = LogisticRegressionPath(
            train.features.to(device),
            train.labels.to(device),
            ctx.benchmark.num_classes,
            standardize=options.standardize,
            tol=options.tol,
            max_iter=options.max_iter,
            solver=options.solver,
        )
        task = ctx.progress.add_task("LP sweep over C", total=len(options.C))
        solutions = path.fit_path(options.C, on_step=lambda _s: ctx.progress.advance(task))
        ctx.progress.remove_task(task)
        val_features = val.features.to(device)
        candidates = []
        for index, solution in enumerate(solutions):
            logits = predict_logits(val_features, solution.weight, solution.bias)
            candidates.append(
                Candidate(
                    hparams={"C": solution.C},
                    id_val=accuracy(logits, val.labels),
                    kind="head",
                    artifact=HEADS,
                    index=index,
                    info={
                        "solver": path.solver,
                        "iterations": solution.iterations,
                        "converged": solution.converged,
                        "grad_max": solution.grad_max,
                    },
                )
            )
        atomic_torch_save(
            cell_dir / HEADS,
            {
                "C": torch.tensor([s.C for s in solutions], dtype=torch.float64),
                "weight": torch.stack([s.weight.cpu() for s in solutions]),
                "bias": torch.stack([s.bias.cpu() for s in solutions]),
            },
        )
        return candidates

    def predictors(
        self, ctx: MethodContext, cell_dir: Path, candidates: list[Candidate]
    ) -> Iterator[LinearHead]:
        """Every candidate's head from one read of ``heads.pt``."""
        weights, biases = load_heads(cell_dir)
        for candidate in candidates:
            yield LinearHead(weights[candidate.index], biases[candidate.index])

    def describe(self, options: LinearProbeOptions) -> dict[str, str]:
        return {"batchnorm": "frozen", "grid": f"C: {len(options.C)} values"}


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
