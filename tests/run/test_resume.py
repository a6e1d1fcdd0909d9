"""A run killed with SIGKILL mid fine-tuning resumes to bitwise-identical results, even when it
resumes with other loader settings (streamed splits, a worker)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lpft.config import resolve_config
from lpft.run.runner import Runner
from tests_support import all_candidate_metrics

TESTS_DIR = Path(__file__).resolve().parents[1]
SRC_DIR = TESTS_DIR.parent / "src"

CHILD = """
import json, sys
import conftest  # registers the tiny benchmark and backbone
from lpft.config import resolve_config
from lpft.run.runner import Runner
Runner(resolve_config(overrides=json.loads(sys.argv[1])), quiet=True).run()
"""


def resume_overrides(out: Path) -> dict:
    return {
        "benchmark": "tiny",
        "benchmark_options": {"per_class": 24, "augment": "rrc_flip"},
        "model": "builtin:tiny-test",
        "seeds": 1,
        "out": str(out),
        "report": False,
        "device": "cpu",
        "methods": {
            "lp": {"C": [1e-2, 1.0]},
            "ft": {"epochs": 4, "lrs": [0.01, 0.03], "checkpoint_every_steps": 2},
            "lpft": {"epochs": 3, "lrs": [0.003]},
        },
    }


def wait_for_checkpoint(process: subprocess.Popen, out: Path, timeout: float) -> Path | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = next((out / "cells").glob("ft/*/*/last.pt"), None) if out.exists() else None
        if found is not None:
            return found
        time.sleep(0.005)
    return None


def test_sigkill_during_fine_tuning_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    killed_out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), str(SRC_DIR)]))
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(resume_overrides(killed_out))], env=env
    )
    try:
        checkpoint = wait_for_checkpoint(process, killed_out, timeout=120)
        assert checkpoint is not None, "the run ended before writing a fine-tuning checkpoint"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    partial = killed_out / "results.json"
    assert not partial.exists() or json.loads(partial.read_text())["status"] == "partial"

    streamed = {"store_max_mb": 0, "num_workers": 1}
    resumed_config = resolve_config(overrides=resume_overrides(killed_out) | streamed)
    resumed = Runner(resumed_config, quiet=True).run()
    reference_config = resolve_config(overrides=resume_overrides(tmp_path / "reference"))
    reference = Runner(reference_config, quiet=True).run()

    assert resumed["status"] == "complete"
    assert all_candidate_metrics(resumed) == all_candidate_metrics(reference)
