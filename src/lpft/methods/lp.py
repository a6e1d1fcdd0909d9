"""``lp``: linear probing on frozen features, over the regularisation path."""

from __future__ import annotations

from pathlib import Path

import torch

from lpft.config import LinearProbeOptions
from lpft.engine.evaluate import accuracy
from lpft.engine.logreg import LogisticRegressionPath, predict_logits
from lpft.errors import CheckpointError
from lpft.io import atomic_torch_save
from lpft.methods.base import Candidate, Method
from lpft.methods.registry import METHODS

HEADS = "heads.pt"


@METHODS.register("lp")
class LinearProbe(Method):
    name = "lp"
    options_model = LinearProbeOptions
    seed_dependent = False

    def cells(self, options: LinearProbeOptions) -> list[dict[str, float]]:
        return [{}]

    def fit(
        self,
        ctx,
        options: LinearProbeOptions,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
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


def load_head(cell_dir: Path, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of one C from an LP cell."""
    weights, biases = load_heads(cell_dir)
    return weights[index], biases[index]
