"""Data-parallel cells under torchrun: 2 gloo processes on CPU train exactly what one process
trains with the same global batch (FT with BatchNorm in train mode), and a killed 2-process run
resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lpft.config import resolve_config
from lpft.errors import ConfigError
from lpft.run.runner import Runner
from lpft.training.distributed import GlobalBatchSampler, World
from lpft.training.loaders import EpochSampler
from tests_support import tiny_plugin_env

BATCH = 8


def ddp_config(out: Path) -> dict:
    """FT with BatchNorm in train mode (the default): statistics over the global batch."""
    return {
        "benchmark": "tiny",
        "benchmark_options": {"per_class": 24},
        "model": "builtin:tiny-test",
        "seeds": 1,
        "out": str(out),
        "report": False,
        "device": "cpu",
        "keep_checkpoints": True,
        "methods": {
            "lp": {"C": [1e-2, 1.0]},
            "ft": {"epochs": 3, "lrs": [0.03], "batch_size": BATCH},
            "lpft": {"epochs": 1, "lrs": [0.003], "batch_size": BATCH},
        },
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """The single-process run every distributed run must reproduce."""
    out = tmp_path_factory.mktemp("single") / "run"
    results = Runner(resolve_config(overrides=ddp_config(out)), quiet=True).run()
    return out, results


def torchrun_command(config_path: Path, nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "lpft", "run", "--config", str(config_path), f"--nproc={nproc}"]


def write_config(tmp_path: Path, out: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(ddp_config(out)))
    return path


def fitted_weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {
        str(path.relative_to(out)): torch.load(path, weights_only=True)["model"]
        for path in sorted((out / "cells").glob("*/*/*/best.pt"))
    }


def assert_same_run(out: Path, results: dict, ref_out: Path, ref_results: dict) -> None:
    weights, ref_weights = fitted_weights(out), fitted_weights(ref_out)
    assert sorted(weights) == sorted(ref_weights) and len(weights) == 2
    for name, state in weights.items():
        for key, tensor in state.items():
            torch.testing.assert_close(tensor, ref_weights[name][key], rtol=1e-4, atol=1e-5)
    for key, entry in results["methods"].items():
        ref_entry = ref_results["methods"][key]
        for seed, ref_seed in zip(entry["seeds"], ref_entry["seeds"], strict=True):
            chosen, ref_chosen = seed["selected"], ref_seed["selected"]
            assert chosen["hparams"] == ref_chosen["hparams"]
            for metric in ("id_val", "id_test"):
                assert chosen[metric] == pytest.approx(ref_chosen[metric], abs=1e-9)
            assert chosen["ood"] == pytest.approx(ref_chosen["ood"], abs=1e-9)
            for epoch, ref_epoch in zip(
                chosen.get("history", []), ref_chosen.get("history", []), strict=True
            ):
                assert epoch["train_loss"] == pytest.approx(ref_epoch["train_loss"], rel=1e-4)
                assert epoch["train_acc"] == pytest.approx(ref_epoch["train_acc"], abs=1e-9)


def test_global_batches_are_split_over_ranks_whatever_the_world_size() -> None:
    single = list(EpochSampler(50, seed=3))
    for start in (0, 2 * BATCH):
        single_batches = [single[i : i + BATCH] for i in range(start, 48, BATCH)]
        ranks = []
        for rank in range(2):
            sampler = GlobalBatchSampler(50, 3, BATCH, World(rank, 2))
            sampler.set_position(0, start)
            ranks.append(list(sampler))
            assert len(sampler) == len(ranks[-1])
        half = BATCH // 2
        rebuilt = [
            ranks[0][b * half : (b + 1) * half] + ranks[1][b * half : (b + 1) * half]
            for b in range(len(single_batches))
        ]
        assert rebuilt == single_batches


def test_a_batch_that_does_not_split_evenly_is_refused() -> None:
    with pytest.raises(ConfigError, match="batch_size 9 is not divisible by the 2 processes"):
        GlobalBatchSampler(50, 0, 9, World(0, 2))


def test_two_gloo_processes_train_what_one_process_trains(tmp_path: Path, reference) -> None:
    out = tmp_path / "ddp"
    finished = subprocess.run(
        torchrun_command(write_config(tmp_path, out)),
        env=tiny_plugin_env(tmp_path / "site"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "complete"
    assert_same_run(out, results, *reference)


def test_an_error_under_nproc_is_one_line_and_its_exit_code(tmp_path: Path) -> None:
    """Every process meets the same bad setting: rank 0 says it once, and torchrun's own
    report and traceback stay out of the way."""
    config = ddp_config(tmp_path / "run")
    config["methods"]["ft"]["batch_size"] = 9
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(config))
    finished = subprocess.run(
        torchrun_command(path),
        env=tiny_plugin_env(tmp_path / "site"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 2, finished.stderr[-3000:]
    errors = [line for line in finished.stderr.splitlines() if line.startswith("lpft: error:")]
    assert len(errors) == 1 and "batch_size 9 is not divisible by the 2" in errors[0], errors
    assert "Traceback" not in finished.stderr and "ChildFailedError" not in finished.stderr


def wait_for_first_epoch(process: subprocess.Popen, out: Path, timeout: float) -> Path | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        found = next((out / "cells").glob("ft/*/*/last.pt"), None) if out.exists() else None
        if found is not None:
            return found
        time.sleep(0.005)
    return None


def test_a_killed_two_process_run_resumes_to_the_same_result(tmp_path: Path, reference) -> None:
    out = tmp_path / "ddp"
    config_path = write_config(tmp_path, out)
    env = tiny_plugin_env(tmp_path / "site")
    process = subprocess.Popen(
        torchrun_command(config_path), env=env, start_new_session=True, stderr=subprocess.PIPE
    )
    try:
        checkpoint = wait_for_first_epoch(process, out, timeout=180)
        assert checkpoint is not None, "the run ended before fine-tuning saved an epoch"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert checkpoint.is_file() and not (checkpoint.parent / "fit.json").exists()

    finished = subprocess.run(
        torchrun_command(config_path), env=env, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert_same_run(out, results, *reference)
