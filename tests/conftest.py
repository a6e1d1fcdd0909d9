"""Shared fixtures: a tiny registered benchmark and backbone so engine tests run in seconds
(defined in ``tiny_benchmark``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tiny_benchmark  # noqa: F401 - registers the tiny benchmark and backbone
from tests_support import OodGuard


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


def pytest_sessionfinish(session, exitstatus):
    """A collection with no tests is not a failure (exit code 5 would fail CI)."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


os.environ.setdefault("MPLBACKEND", "Agg")
