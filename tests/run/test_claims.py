"""Per-cell claims: exclusive, kept alive by a heartbeat, taken over only when the taker has
seen them stale on its own clock, and fencing every write of a holder that lost its cell."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from lpft.io import atomic_write_json
from lpft.run.cell import attempt_cell, clear_partial_outputs, read_attempts
from lpft.run.claims import CLAIM, ClaimInfo, ClaimLost, read_claim, remove_claim, try_claim
from tests_support import concurrently


def plant_claim(cell: Path, **fields) -> ClaimInfo:
    info = ClaimInfo(
        **{
            "token": "old",
            "host": "other-host",
            "pid": 1,
            "job": "",
            "start": time.time(),
            "lease": 60.0,
            **fields,
        }
    )
    cell.mkdir(parents=True, exist_ok=True)
    (cell / CLAIM).write_text(json.dumps(asdict(info)))
    return info


def test_a_held_claim_excludes_others_until_released(tmp_path: Path) -> None:
    claim = try_claim(tmp_path / "cell")
    assert claim is not None
    assert try_claim(tmp_path / "cell") is None
    holder = read_claim(tmp_path / "cell")
    assert holder.host == socket.gethostname() and holder.token == claim.info.token
    claim.release()
    assert not (tmp_path / "cell" / CLAIM).exists()
    again = try_claim(tmp_path / "cell")
    assert again is not None
    again.release()


def test_staleness_is_judged_on_the_takers_clock_not_the_holders(tmp_path: Path) -> None:
    """A claim stamped long ago by another host's clock is live until this process has seen
    its heartbeat unchanged for the lease; then it is taken over."""
    plant_claim(tmp_path / "cell", start=time.time() - 3600, lease=1.0)
    assert try_claim(tmp_path / "cell", lease=1.0) is None
    time.sleep(1.1)
    claim = try_claim(tmp_path / "cell", lease=1.0)
    assert claim is not None and read_claim(tmp_path / "cell").token == claim.info.token
    claim.release()


def test_a_beating_holder_keeps_its_claim(tmp_path: Path) -> None:
    holder = try_claim(tmp_path / "cell", lease=1.0)
    assert try_claim(tmp_path / "cell", lease=1.0) is None
    time.sleep(1.5)
    assert try_claim(tmp_path / "cell", lease=1.0, wait=True) is None
    assert read_claim(tmp_path / "cell").token == holder.info.token
    holder.release()


def exited_pid() -> int:
    """The id of a process of this host that has exited."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)


def test_the_claim_of_an_exited_process_of_this_host_is_taken_over(tmp_path: Path) -> None:
    plant_claim(tmp_path / "cell", host=socket.gethostname(), pid=exited_pid())
    claim = try_claim(tmp_path / "cell")
    assert claim is not None
    claim.release()


@pytest.mark.parametrize("content", ["", '{"token": "half'])
def test_an_empty_or_corrupt_claim_expires_like_a_stale_one(tmp_path: Path, content) -> None:
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / CLAIM).write_text(content)
    started = time.monotonic()
    claim = try_claim(cell, lease=1.0, wait=True)
    assert claim is not None and time.monotonic() - started >= 1.0
    assert read_claim(cell).token == claim.info.token
    claim.release()


def test_a_requeued_job_takes_its_own_claim_back_and_records_the_preemption(
    tmp_path: Path, monkeypatch
) -> None:
    plant_claim(tmp_path / "cell", job="slurm:42_3")
    assert try_claim(tmp_path / "cell", job="slurm:42_4") is None
    assert try_claim(tmp_path / "cell", job="slurm:42_3") is None  # the same job, not requeued
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with attempt_cell(tmp_path / "cell", 60.0, job="slurm:42_3") as attempt:
        assert attempt is not None
    (line,) = read_attempts(tmp_path / "cell")
    assert (line["token"], line["outcome"]) == ("old", "preempted")


def test_two_ray_tasks_never_share_an_identity(tmp_path: Path, monkeypatch) -> None:
    class Context:
        def __init__(self, task: str) -> None:
            self.task = task

        def get_task_id(self) -> str:
            return self.task

    class FakeRay:
        task = "a"

        def is_initialized(self) -> bool:
            return True

        def get_runtime_context(self) -> Context:
            return Context(self.task)

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    first = try_claim(tmp_path / "cell")
    assert first.info.job == "ray:a"
    fake.task = "b"
    assert try_claim(tmp_path / "cell") is None
    first.release()


def test_many_contenders_for_a_stale_claim_yield_one_holder(tmp_path: Path) -> None:
    plant_claim(tmp_path / "cell", host=socket.gethostname(), pid=exited_pid())
    won = [c for c in concurrently(lambda: try_claim(tmp_path / "cell"), 8) if c is not None]
    assert len(won) == 1
    assert read_claim(tmp_path / "cell").token == won[0].info.token
    won[0].release()


def test_a_holder_that_lost_its_claim_is_stopped_and_writes_nothing(tmp_path: Path) -> None:
    """The taker's claim survives the old holder's release; the old holder's writes fail and
    the thread running its cell is interrupted within one heartbeat."""
    cell = tmp_path / "cell"
    with attempt_cell(cell, lease=1.0) as attempt:
        assert remove_claim(cell, attempt.claim.info.token)
        taker = try_claim(cell)
        with pytest.raises(ClaimLost), attempt.running():
            atomic_write_json(cell / "fit.json", {"status": "done"})
        assert not (cell / "fit.json").exists()
        assert not list(cell.glob(".fit.json*"))
    assert read_claim(cell).token == taker.info.token
    assert read_attempts(cell) == []
    taker.release()


def test_a_running_holder_is_interrupted_within_one_heartbeat(tmp_path: Path) -> None:
    cell = tmp_path / "cell"
    with attempt_cell(cell, lease=1.5) as attempt:
        taken = threading.Timer(0.2, remove_claim, (cell, attempt.claim.info.token))
        started = time.monotonic()
        taken.start()
        with pytest.raises(ClaimLost), attempt.running():
            while time.monotonic() - started < 10:
                time.sleep(0.01)
        assert time.monotonic() - started < 0.2 + 1.5 / 3 + 0.3
    assert not (cell / CLAIM).exists()


def test_a_taker_removes_only_the_temporaries_of_exited_processes(tmp_path: Path) -> None:
    cell = tmp_path / "cell"
    host = socket.gethostname().replace(".", "_")
    plant_claim(cell, host=socket.gethostname(), pid=exited_pid())
    live = cell / f".best.pt.{host}-{os.getpid()}.abc.tmp"
    dead = cell / f".best.pt.{host}-{exited_pid()}.abc.tmp"
    elsewhere = cell / ".best.pt.other_host-1.abc.tmp"
    for temporary in (live, dead, elsewhere):
        temporary.write_bytes(b"partial")
    with attempt_cell(cell, 60.0) as attempt:
        assert attempt is not None
    assert live.exists() and elsewhere.exists() and not dead.exists()


def test_clearing_a_diverged_cell_keeps_its_records_and_others_files(tmp_path: Path) -> None:
    kept = ["fit.json", "metrics.json", "attempts.jsonl", "error.json", CLAIM, "heartbeat.x"]
    kept += [f"{CLAIM}.break-x", ".best.pt.host-1.abc.tmp"]
    for name in [*kept, "best.pt", "last.pt", "block1/last.pt"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    clear_partial_outputs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
