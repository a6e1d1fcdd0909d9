"""Shared fixtures: a tiny registered benchmark and backbone so engine tests run in seconds.

``tiny`` is a 4-class problem of 8x8 images (noisy class prototypes); its OOD set draws the
same classes with a different noise level and a brightness shift. It is registered through the
public registries exactly as a user's own benchmark would be.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict
from rich.progress import Progress

from lpft.config import resolve_config
from lpft.data import (
    Benchmark,
    BuildContext,
    EvalSplit,
    create_benchmark,
    lpft_home,
    register_benchmark,
)
from lpft.models import BUILTIN_BACKBONES, create_backbone
from lpft.models.glyph_resnet import GlyphResNet
from lpft.run.context import RunContext
from lpft.run.runner import Runner
from tests_support import ArrayImages, OodGuard

TINY_CLASSES = 4


class TinyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_class: int = 12
    seed: int = 0
    guard_ood: bool = False
    shuffle_ood_labels: bool = False
    ood_val: bool = False
    augment: str = "none"


def tiny_split(prototypes, per_class, rng, noise, shift):
    labels = np.repeat(np.arange(TINY_CLASSES), per_class)
    pixels = prototypes[labels] + rng.normal(0, noise, (len(labels), 8, 8)) + shift
    return np.clip(pixels * 255, 0, 255).astype(np.uint8), labels


@register_benchmark(
    "tiny",
    options_model=TinyOptions,
    defaults={
        "methods": {
            "ft": {"epochs": 2, "batch_size": 8, "lrs": [0.01]},
            "lpft": {"epochs": 2, "batch_size": 8, "lrs": [0.001]},
        }
    },
)
def build_tiny(context: BuildContext, options: TinyOptions) -> Benchmark:
    rng = np.random.default_rng(options.seed)
    prototypes = rng.uniform(0.1, 0.9, (TINY_CLASSES, 8, 8))
    train = tiny_split(prototypes, options.per_class, rng, 0.15, 0.0)
    val = tiny_split(prototypes, options.per_class, rng, 0.15, 0.0)
    test = tiny_split(prototypes, options.per_class, rng, 0.15, 0.0)
    ood_images, ood_labels = tiny_split(prototypes, options.per_class, rng, 0.3, 0.1)
    ood_val = tiny_split(prototypes, options.per_class, rng, 0.3, 0.1)
    if options.shuffle_ood_labels:
        ood_labels = rng.permutation(ood_labels)
    guard = OodGuard() if options.guard_ood else None
    return Benchmark(
        name="tiny",
        classes=[f"c{i}" for i in range(TINY_CLASSES)],
        id_train=ArrayImages(*train),
        id_val=ArrayImages(*val),
        id_test=ArrayImages(*test, guard),
        ood={"shifted": EvalSplit(ArrayImages(ood_images, ood_labels, guard))},
        ood_val={"shifted": EvalSplit(ArrayImages(*ood_val, guard))} if options.ood_val else {},
        augment=options.augment,
    )


@BUILTIN_BACKBONES.register("tiny-test")
def tiny_backbone() -> GlyphResNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return GlyphResNet(widths=(8, 16, 16), blocks_per_stage=1)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Generated datasets go to one session-wide temporary cache, never to ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "lpft-home"
    monkeypatch.setenv("LPFT_HOME", str(cache))
    OodGuard.allowed = True
    yield


@pytest.fixture
def tiny_overrides(tmp_path: Path) -> dict:
    return {
        "benchmark": "tiny",
        "model": "builtin:tiny-test",
        "seeds": 2,
        "out": str(tmp_path / "run"),
        "report": False,
        "device": "cpu",
        "methods": {"lp": {"C": [1e-3, 1e-2, 1e-1, 1.0]}, "ft": {}, "lpft": {}},
    }


# --- methods: a run context for calling a method directly, and a shared variants run -----


@pytest.fixture
def tiny_context(tiny_overrides: dict) -> RunContext:
    config = resolve_config(overrides=tiny_overrides)
    benchmark = create_benchmark(
        config.benchmark, config.benchmark_options, BuildContext(None, lpft_home(), False)
    )
    return RunContext(
        config=config,
        benchmark=benchmark,
        pretrained=create_backbone(config.model),
        device=torch.device("cpu"),
        progress=Progress(disable=True),
        autocast_dtype=None,
    )


FINE_TUNING_RUN = {
    "ft": {"lrs": [0.03], "epochs": 2, "batch_size": 8},
    "l2sp": {"lrs": [0.03], "epochs": 2, "batch_size": 8, "alphas": [0.0], "beta": 0.0},
    "l2sp@strong": {"lrs": [0.03], "epochs": 2, "batch_size": 8, "alphas": [10.0]},
    "freeze-embed": {"lrs": [0.03], "epochs": 2, "batch_size": 8},
    "surgical": {"lrs": [0.03], "epochs": 2, "batch_size": 8},
}


@pytest.fixture(scope="session")
def fine_tuning_run(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """FT and its variants, one seed, BatchNorm in train mode, every checkpoint kept."""
    overrides = {
        "benchmark": "tiny",
        "model": "builtin:tiny-test",
        "seeds": 1,
        "out": str(tmp_path_factory.mktemp("variants") / "run"),
        "report": False,
        "device": "cpu",
        "keep_checkpoints": True,
        "methods": FINE_TUNING_RUN,
    }
    runner = Runner(resolve_config(overrides=overrides), quiet=True)
    runner.run()
    return runner


def pytest_sessionfinish(session, exitstatus):
    """A collection with no tests is not a failure (exit code 5 would fail CI)."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


os.environ.setdefault("MPLBACKEND", "Agg")
