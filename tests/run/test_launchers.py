"""Cells fanned out as jobs: submitit (local executor) gives the ``local`` launcher's results; a
killed launch is finished by relaunching; concurrent launches share the work (each cell fitted
once, on record in its ``attempts.jsonl``)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lpft.cli.main import main
from lpft.config import resolve_config
from lpft.run.cell import read_attempts
from lpft.run.launchers import launch
from tests_support import selected_metrics, tiny_plugin_env, tiny_run_config

CELLS = {"lp/shared/sweep", "ft/seed0/lr=0.01", "lpft/seed0/lr=0.001"}


# A checkpoint after every step leaves a window to kill LP-FT's job mid-cell; resuming from any
# step gives the same numbers, so every run here can compare with the same reference.
LPFT = {"epochs": 1, "checkpoint_every_steps": 1}


def sweep_config(out: Path, methods: tuple[str, ...] = ("lp", "ft", "lpft"), **launcher) -> dict:
    every = {"lp": {"C": [1e-2, 1.0]}, "ft": {"epochs": 1}, "lpft": LPFT}
    return tiny_run_config(out, {name: every[name] for name in methods}, launcher=launcher)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The ``local`` launcher's results: every cell a job, one after another, in this process."""
    out = tmp_path_factory.mktemp("local") / "run"
    results = launch(resolve_config(overrides=sweep_config(out, name="local")))
    assert results["status"] == "complete"
    return results


def launched_lp_then_lpft(tmp_path: Path, monkeypatch, **launcher) -> dict:
    """LP's job, then (next wave) LP-FT's job that starts from its head, in other processes."""
    monkeypatch.setenv("PYTHONPATH", tiny_plugin_env(tmp_path / "site")["PYTHONPATH"])
    config = sweep_config(tmp_path / "run", ("lp", "lpft"), **launcher)
    return launch(resolve_config(overrides=config))


def same_selections(results: dict, reference: dict) -> bool:
    expected = selected_metrics(reference)
    return selected_metrics(results) == {key: expected[key] for key in results["methods"]}


def test_submitit_local_executor_matches_the_local_launcher(
    tmp_path: Path, reference, monkeypatch
) -> None:
    slurm = {"cluster": "local", "gpus_per_job": 0, "cpus_per_job": 1, "time_minutes": 10}
    results = launched_lp_then_lpft(tmp_path, monkeypatch, name="slurm", slurm=slurm)
    assert results["status"] == "complete"
    assert same_selections(results, reference)
    assert len(list((tmp_path / "run" / "jobs").glob("*/*_result.pkl"))) == 2


def job_env(tmp_path: Path) -> dict[str, str]:
    """Two launches share the 2 cores: one thread each."""
    return {**tiny_plugin_env(tmp_path / "site"), "OMP_NUM_THREADS": "1"}


def launch_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "lpft", "run", "--config", str(config_path), "--quiet"]


def write_config(tmp_path: Path, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(sweep_config(tmp_path / "run", name="local")))
    return path


def ran_here(output: str) -> set[str]:
    """Cells a launch reports having run itself (``KEY: done``)."""
    return set(re.findall(r"^(\S+): done$", output, flags=re.MULTILINE))


def test_relaunch_after_a_killed_job_runs_only_the_missing_cells(
    tmp_path: Path, reference, capsys
) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen(launch_command(write_config(tmp_path)), env=job_env(tmp_path))
    try:
        checkpoint = None
        deadline = time.monotonic() + 180
        while checkpoint is None and process.poll() is None and time.monotonic() < deadline:
            checkpoint = next(run.glob("cells/lpft/*/*/last.pt"), None) if run.exists() else None
            time.sleep(0.005)
        assert checkpoint is not None, "the launch ended before LP-FT's cell saved an epoch"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    killed_cell = checkpoint.parent.relative_to(run / "cells").as_posix()
    assert (checkpoint.parent / "claim.json").is_file(), "the dead job's claim is left behind"
    records = [p for p in run.glob("cells/*/*/*/*.json") if p.name != "claim.json"]
    before = {path: path.stat().st_mtime_ns for path in records}
    finished = {
        p.parent.relative_to(run / "cells").as_posix() for p in run.glob("cells/*/*/*/metrics.json")
    }

    assert main(["status", str(run)]) == 0
    status = capsys.readouterr().out
    assert re.search(r"lp\W+shared\W+sweep\W+done", status)
    assert re.search(r"lpft\W+0\W+lr=0.001\W+pending", status)
    assert "running" not in status  # the holder is dead: its claim does not count

    results = launch(resolve_config(overrides=sweep_config(run, name="local")))
    output = capsys.readouterr().err
    assert results["status"] == "complete"
    assert selected_metrics(results) == selected_metrics(reference)
    assert killed_cell in ran_here(output)
    assert finished and ran_here(output) == CELLS - finished
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"
    outcomes = [a["outcome"] for a in read_attempts(checkpoint.parent)]
    assert outcomes == ["lost-claim", "fitted"]


def test_two_concurrent_launchers_never_run_the_same_cell(tmp_path: Path, reference) -> None:
    config_path = write_config(tmp_path)
    env = job_env(tmp_path)
    processes = [
        subprocess.Popen(launch_command(config_path), env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    first, second = (ran_here(output) for output in outputs)
    assert not first & second, f"both launchers ran {first & second}"
    assert first | second == CELLS
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "complete"
    assert selected_metrics(results) == selected_metrics(reference)
    assert not list((tmp_path / "run").glob("cells/*/*/*/claim.json*"))
    for cell in CELLS:
        assert [a["outcome"] for a in read_attempts(tmp_path / "run/cells" / cell)] == ["fitted"]
