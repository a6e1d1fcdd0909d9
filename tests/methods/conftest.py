"""A run context on the tiny benchmark, for calling a method's ``fit`` and ``predictors``
directly, and one shared run of the fine-tuning variants with their checkpoints kept."""

from __future__ import annotations

import pytest
import torch
from rich.progress import Progress

from lpft.config import resolve_config
from lpft.data import BuildContext, create_benchmark, lpft_home
from lpft.models import create_backbone
from lpft.run.context import RunContext
from lpft.run.runner import Runner


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
