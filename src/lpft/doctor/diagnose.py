"""``diagnose``: the probes, the measurements and the recommendation for one configuration."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from rich.progress import Progress
from torch.utils.data import Dataset

from lpft.config import RunConfig
from lpft.data import BuildContext, create_benchmark, lpft_home
from lpft.doctor import indicators
from lpft.doctor.probes import ProbeSet, run_probes
from lpft.doctor.targets import benchmark_targets
from lpft.doctor.verdict import Measurements, TargetMeasures, recommend
from lpft.errors import ConfigError
from lpft.models import create_backbone
from lpft.run.context import RunContext
from lpft.training.runtime import configure_determinism, resolve_device

SCHEMA = "lpft-doctor-v1"
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def diagnose(
    config: RunConfig,
    progress: Progress,
    targets: Mapping[str, Dataset] | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """The doctor's JSON document for ``config``; ``targets`` (unlabeled image sets) default to
    the benchmark's OOD sets, whose labels are dropped unread."""
    started = time.perf_counter()
    configure_determinism(config.deterministic)
    device = resolve_device(config.device)
    benchmark = create_benchmark(
        config.benchmark,
        config.benchmark_options,
        BuildContext(config.data_root, lpft_home(), config.skip_bad_images),
    )
    if targets is None:
        if not benchmark.ood:
            raise ConfigError(
                f"benchmark '{benchmark.name}' has no OOD sets: pass --target DIR (a folder of "
                "unlabeled target images)"
            )
        targets = benchmark_targets(benchmark.ood)
    ctx = RunContext(
        config=config,
        benchmark=benchmark,
        pretrained=create_backbone(config.model).to(device),
        device=device,
        progress=progress,
        autocast_dtype=PRECISIONS[config.precision],
    )
    probes = run_probes(ctx, targets, epochs)
    recommendation = recommend(measure(probes))
    return {
        "schema": SCHEMA,
        "benchmark": benchmark.name,
        "model": config.model,
        "targets": {name: len(dataset) for name, dataset in targets.items()},
        **recommendation.to_json(),
        "probes": {
            key: {
                "hparams": probe.hparams,
                "epochs": probe.epochs,
                "id_val": probe.id_val,
                "seconds": probe.seconds,
            }
            for key, probe in probes.probes.items()
        },
        "estimated_cost_seconds": estimated_costs(config, probes),
        "doctor_seconds": time.perf_counter() - started,
        "ood_labels_used": False,
        "target_labels_used": False,
    }


def measure(probes: ProbeSet) -> Measurements:
    """Indicators of every target set from the pretrained outputs and the probes."""
    lp, ft = probes.probes["lp"], probes.probes["ft"]
    targets = {}
    for name, pretrained in probes.targets.items():
        ratio, se = indicators.change_ratio(
            pretrained.features,
            ft.targets[name].features,
            probes.id_val.features,
            ft.val.features,
        )
        targets[name] = TargetMeasures(
            change_ratio=ratio,
            change_ratio_se=se,
            change_target=indicators.relative_change(
                pretrained.features, ft.targets[name].features
            ),
            change_id=indicators.relative_change(probes.id_val.features, ft.val.features),
            uncovered=indicators.uncovered_energy(probes.id_train.features, pretrained.features),
            uncovered_id=indicators.uncovered_energy(
                probes.id_train.features, probes.id_val.features
            ),
            agreement=indicators.agreement(lp.targets[name].logits, ft.targets[name].logits),
            agreement_id=indicators.agreement(lp.val.logits, ft.val.logits),
        )
    return Measurements({key: p.id_val for key, p in probes.probes.items()}, targets)


def estimated_costs(config: RunConfig, probes: ProbeSet) -> dict[str, float]:
    """Seconds each method would take in a full run of ``config`` (its grid, epochs and seeds),
    scaled from the probes' fits; feature extraction is counted once, with LP."""
    seeds = config.seeds
    lp = probes.extraction_seconds + probes.probes["lp"].seconds

    def sweep(method: str) -> float:
        probe = probes.probes[method]
        options = config.method_options(method)
        return probe.seconds * options.epochs / probe.epochs * len(options.lrs) * seeds

    ft = sweep("ft")
    return {
        "lp": lp,
        "ft": ft,
        "lpft": lp + sweep("lpft"),
        "wise-ft": lp + ft + probes.probes["wise-ft"].seconds * seeds,
    }
