"""The doctor's probes: LP on the cached pretrained features, one short FT and one short LP-FT at
the middle of their learning-rate grids, WiSE-FT between the FT probe and pretrained + LP head.

Each probe is fitted by the registered method itself (``Method.fit`` through a ``RunContext``),
on seed 0, selected on ID validation like a run's cells; then its outputs are computed on ID val
(labelled) and on every target set (unlabeled: ``doctor.targets``). ID test is never read.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel
from torch.utils.data import Dataset

from lpft.config import RunConfig
from lpft.methods import Selected, method_for
from lpft.methods.base import Candidate, LinearHead, Network, Predictor
from lpft.run.context import RunContext
from lpft.training.features import ForwardOutputs, forward_split
from lpft.training.logreg import predict_logits
from lpft.training.resident import BatchedLoader

PROBE_SEED = 0
# The probes, in the order they are fitted; each may start from those before it.
PROBES = ("lp", "ft", "lpft", "wise-ft")


@dataclass
class Probe:
    """One fitted probe: its selected hyperparameters, ID val accuracy, fit time, and outputs
    (logits; for networks also penultimate features) on ID val and on each target set."""

    method: str
    hparams: dict[str, float | str]
    id_val: float
    seconds: float
    val: ForwardOutputs
    targets: dict[str, ForwardOutputs] = field(default_factory=dict)
    epochs: int | None = None


@dataclass
class ProbeSet:
    """The pretrained outputs and every probe, with what it took to get them."""

    id_train: ForwardOutputs
    id_val: ForwardOutputs
    targets: dict[str, ForwardOutputs]
    probes: dict[str, Probe]
    extraction_seconds: float


def middle(values: list[float]) -> float:
    """The middle of a grid (upper middle for an even count, as ``--quick`` picks)."""
    return values[len(values) // 2]


def probe_options(config: RunConfig, method: str, epochs: int | None) -> BaseModel:
    """The method's options in this configuration; fine-tuning probes train ``epochs`` epochs
    (default: half the method's, at least 1)."""
    options = config.method_options(method)
    if hasattr(options, "epochs"):
        short = epochs if epochs is not None else max(1, options.epochs // 2)
        options = options.model_copy(update={"epochs": short})
    return options


def probe_hparams(options: BaseModel) -> dict[str, float]:
    """The middle learning rate of a grid; nothing for a method without one."""
    if hasattr(options, "lrs"):
        return {"lr": middle(list(options.lrs))}
    return {}


def best_candidate(candidates: list[Candidate]) -> Candidate:
    """Highest ID val accuracy, first in grid order on ties (the run's rule)."""
    return max(candidates, key=lambda c: c.id_val)


def unlabeled_loader(ctx: RunContext, dataset: Dataset) -> BatchedLoader:
    return BatchedLoader(ctx.batched(dataset), ctx.config.eval_batch_size)


def run_probes(
    ctx: RunContext, targets: Mapping[str, Dataset], epochs: int | None = None
) -> ProbeSet:
    """Fit every probe on ID train (selected on ID val) and compute its outputs."""
    started = time.perf_counter()
    id_train = ctx.features.get("id_train")
    id_val = ctx.features.get("id_val")
    loaders = {name: unlabeled_loader(ctx, dataset) for name, dataset in targets.items()}
    pretrained = {
        name: forward_split(ctx.pretrained, loader, ctx.device, autocast_dtype=ctx.autocast_dtype)
        for name, loader in loaders.items()
    }
    extraction = time.perf_counter() - started
    probes: dict[str, Probe] = {}
    selected: dict[str, Selected] = {}
    with tempfile.TemporaryDirectory(prefix="lpft-doctor-") as workdir:
        for method in PROBES:
            options = probe_options(ctx.config, method, epochs)
            choice, predictor, seconds = fit_probe(ctx, method, epochs, Path(workdir), selected)
            val, outputs = probe_outputs(ctx, predictor, id_val, pretrained, loaders)
            probes[method] = Probe(
                method=method,
                hparams=choice.hparams,
                id_val=choice.id_val,
                seconds=seconds,
                val=val,
                targets=outputs,
                epochs=getattr(options, "epochs", None),
            )
    return ProbeSet(id_train, id_val, pretrained, probes, extraction)


def fit_probe(
    ctx: RunContext,
    method: str,
    epochs: int | None,
    workdir: Path,
    selected: dict[str, Selected],
) -> tuple[Candidate, Predictor, float]:
    """Fit ``method`` as a probe from the ``selected`` probes it requires (a requirement that is
    no probe of its own, such as wise-ft's base, is fitted first, the same way), add its choice
    to ``selected``; also its own fit's seconds (its requirements' not counted)."""
    options = probe_options(ctx.config, method, epochs)
    fitter = method_for(method)
    for requirement in fitter.requirements(options):
        if requirement not in selected:
            fit_probe(ctx, requirement, epochs, workdir, selected)
    begun = time.perf_counter()
    ctx.current_label = f"doctor: {method}"
    cell_dir = workdir / method
    cell_dir.mkdir()
    required = {key: selected[key] for key in fitter.requirements(options)}
    candidates = fitter.fit(ctx, options, probe_hparams(options), PROBE_SEED, cell_dir, required)
    choice = best_candidate(candidates)
    predictor = next(fitter.predictors(ctx, cell_dir, [choice]))
    selected[method] = Selected(choice, predictor)
    return choice, predictor, time.perf_counter() - begun


def probe_outputs(
    ctx: RunContext,
    predictor: Predictor,
    id_val: ForwardOutputs,
    pretrained: dict[str, ForwardOutputs],
    loaders: dict,
) -> tuple[ForwardOutputs, dict[str, ForwardOutputs]]:
    """A predictor's outputs on ID val and on the targets (a linear head reads the pretrained
    features; a network makes its own pass)."""
    if isinstance(predictor, LinearHead):

        def with_head(outputs: ForwardOutputs) -> ForwardOutputs:
            logits = predict_logits(outputs.features, predictor.weight, predictor.bias)
            return ForwardOutputs(outputs.labels, outputs.features, logits)

        return with_head(id_val), {name: with_head(out) for name, out in pretrained.items()}
    assert isinstance(predictor, Network)
    model = predictor.model.to(ctx.device)

    def network_pass(loader) -> ForwardOutputs:
        return forward_split(
            model.backbone, loader, ctx.device, model.head, autocast_dtype=ctx.autocast_dtype
        )

    val = network_pass(ctx.eval_loader("id_val"))
    return val, {name: network_pass(loader) for name, loader in loaders.items()}
