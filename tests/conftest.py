"""Shared fixtures: a tiny registered benchmark and backbone so engine tests run in seconds
(defined in ``tiny_benchmark``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
from rich.progress import Progress

import tiny_benchmark  # noqa: F401 - registers the tiny benchmark and backbone
from lpft.config import resolve_config
from lpft.data import (
    BuildContext,
    create_benchmark,
    lpft_home,
)
from lpft.models import create_backbone
from lpft.models.adapters import host_reachable
from lpft.run.context import RunContext
from lpft.run.runner import Runner
from tests_support import OodGuard


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Generated datasets go to one session-wide temporary cache, never to ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "lpft-home"
    monkeypatch.setenv("LPFT_HOME", str(cache))
    OodGuard.allowed = True
    OodGuard.labels_allowed = True
    yield


@pytest.fixture
def offline(monkeypatch):
    """Every connection attempt (name lookups included) fails, as on a node without network."""

    def refuse(*_args, **_kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    host_reachable.cache_clear()
    yield
    host_reachable.cache_clear()


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
