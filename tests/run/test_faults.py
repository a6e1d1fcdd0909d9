"""Faults on a shared run directory: a stopped job, a damaged claim, a plain run racing a
launcher, concurrent collects, a failing cell."""

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
from lpft.errors import ConfigError, RunLockedError
from lpft.io import run_lock
from lpft.run.cell import ERROR, read_attempts
from lpft.run.claims import CLAIM
from lpft.run.jobs import collect
from lpft.run.launchers import launch
from lpft.run.runner import Runner
from tests_support import concurrently, selected_metrics, tiny_plugin_env, tiny_run_config

FT_CELL = "ft/seed0/lr=0.01"


def overrides(out: Path, methods: dict | None = None, **launcher) -> dict:
    """A short lease where a test waits for one to pass; 10 s where live processes share the
    directory (a loaded machine must not delay a heartbeat past the lease)."""
    methods = methods or {"lp": {"C": [1.0]}, "ft": {"epochs": 1}}
    return tiny_run_config(out, methods, launcher={"lease_seconds": 2, **launcher})


def write_config(path: Path, settings: dict) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


def lpft_process(tmp_path: Path, config: Path, *flags: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "lpft", "run", "--config", str(config), "--quiet", *flags]
    env = {**tiny_plugin_env(tmp_path / "site"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def cell_files(run: Path) -> dict[str, tuple[int, int]]:
    """Every file under the cells but other processes' temporaries: (mtime, size)."""
    return {
        str(path.relative_to(run)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in run.glob("cells/**/*")
        if path.is_file() and not path.name.endswith((".tmp", ".new", ".next"))
    }


def test_a_job_stopped_past_its_lease_writes_nothing_after_the_takeover(tmp_path: Path) -> None:
    methods = {"lp": {"C": [1.0]}, "ft": {"epochs": 6, "checkpoint_every_steps": 1}}
    settings = overrides(tmp_path / "run", methods, name="local")
    run, cell = tmp_path / "run", tmp_path / "run/cells" / FT_CELL
    stopped = lpft_process(tmp_path, write_config(tmp_path / "config.yaml", settings))
    try:
        deadline = time.monotonic() + 240
        while not (cell / "last.pt").exists() and stopped.poll() is None:
            assert time.monotonic() < deadline, "FT's cell never saved a checkpoint"
            time.sleep(0.005)
        stopped.send_signal(signal.SIGSTOP)
        assert not (cell / "fit.json").exists(), "FT's cell finished before the stop"
        results = launch(resolve_config(overrides=settings))
        assert results["status"] == "complete"
        before = cell_files(run)
        stopped.send_signal(signal.SIGCONT)
        output = stopped.communicate(timeout=240)[1]
    finally:
        stopped.send_signal(signal.SIGCONT)
        if stopped.poll() is None:
            stopped.kill()
    assert f"{FT_CELL}: lost its claim" in output, output
    assert cell_files(run) == before
    assert [a["outcome"] for a in read_attempts(cell)] == ["lost-claim", "fitted"]
    assert read_attempts(cell)[0]["pid"] == stopped.pid


def test_an_empty_claim_expires_like_a_stale_one(tmp_path: Path) -> None:
    cell = tmp_path / "run/cells/lp/shared/sweep"
    cell.mkdir(parents=True)
    (cell / CLAIM).write_text("")
    results = launch(resolve_config(overrides=overrides(tmp_path / "run", name="local")))
    assert results["status"] == "complete"
    assert [a["outcome"] for a in read_attempts(cell)] == ["fitted"]


def test_a_plain_run_racing_a_launcher_shares_the_cells(tmp_path: Path) -> None:
    """A plain run started while a launch works on the directory: each cell fitted once."""
    methods = {"lp": {"C": [1.0]}, "ft": {"epochs": 3, "lrs": [0.01, 0.003]}, "lpft": {}}
    reference = Runner(
        resolve_config(overrides=overrides(tmp_path / "reference", methods)), quiet=True
    ).run()
    settings = overrides(tmp_path / "run", methods, name="local", lease_seconds=10)
    launcher = lpft_process(tmp_path, write_config(tmp_path / "launch.yaml", settings))
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "run").glob(f"cells/*/*/*/{CLAIM}")):
            assert launcher.poll() is None and time.monotonic() < deadline, "no cell claimed"
            time.sleep(0.005)
        plain = overrides(tmp_path / "run", methods, lease_seconds=10)
        results = Runner(resolve_config(overrides=plain), quiet=True).run()
        output = launcher.communicate(timeout=240)[1]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, output
    assert results["status"] == "complete"
    assert selected_metrics(results) == selected_metrics(reference)
    for cell in (tmp_path / "run").glob("cells/*/*/*"):
        assert [a["outcome"] for a in read_attempts(cell)] == ["fitted"], cell


def test_collect_holds_the_run_lock_and_keeps_the_more_complete_results(
    tmp_path: Path, monkeypatch
) -> None:
    run = tmp_path / "run"
    launch(resolve_config(overrides=overrides(run, name="local")))
    complete = (run / "results.json").read_text()
    (run / "cells" / FT_CELL / "metrics.json").unlink()  # an older view of the run
    collected = concurrently(lambda: collect(run), 2)
    assert [r["status"] for r in collected] == ["partial", "partial"]
    assert (run / "results.json").read_text() == complete
    monkeypatch.setattr("lpft.run.rundir.LOCK_WAIT_SECONDS", 0.3)
    with run_lock(run), pytest.raises(RunLockedError):
        collect(run)


def test_a_failing_cell_never_ends_the_launch(tmp_path: Path, monkeypatch, capsys) -> None:
    def boom(*_args, **_kwargs):
        raise ValueError("boom")

    monkeypatch.setattr("lpft.methods.l2sp.L2SP.fit", boom)
    methods = {"lp": {"C": [1.0]}, "l2sp": {"epochs": 1, "alphas": [0.01]}, "ft": {"epochs": 1}}
    config = write_config(tmp_path / "c.yaml", overrides(tmp_path / "run", methods, name="local"))
    assert main(["run", "--config", str(config), "--quiet"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [
        f"lpft: error: 1 cell(s) failed: l2sp/seed0/lr=0.01,alpha=0.01 "
        f"(why: lpft status {tmp_path / 'run'})"
    ]
    cell = tmp_path / "run/cells/l2sp/seed0/lr=0.01,alpha=0.01"
    assert json.loads((cell / ERROR).read_text())["error"] == "ValueError: boom"
    assert [a["outcome"] for a in read_attempts(cell)] == ["failed", "failed"]
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert results["methods"]["ft"]["seeds"][0]["selected"]["id_test"] >= 0.0
    assert main(["status", str(tmp_path / "run")]) == 0
    status = capsys.readouterr().out
    assert re.search(r"l2sp\W+0\W+lr=0.01,alpha=0.01\W+failed\W+2\W+failed\W+ValueError", status)


def test_max_failures_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_failures"):
        resolve_config(overrides=overrides(tmp_path, max_failures=0))
