"""Per-cell claims: exclusive, kept alive by a heartbeat, taken over only when stale."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from lpft.run.claims import CLAIM, ClaimInfo, read_claim, try_claim


def plant_claim(cell: Path, **fields) -> ClaimInfo:
    info = ClaimInfo(
        **{
            "host": "other-host",
            "pid": 1,
            "token": "old",
            "heartbeat": time.time(),
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


def test_a_live_claim_of_another_host_is_respected(tmp_path: Path) -> None:
    plant_claim(tmp_path / "cell")
    assert try_claim(tmp_path / "cell") is None
    assert read_claim(tmp_path / "cell").token == "old"


def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    plant_claim(tmp_path / "cell", heartbeat=time.time() - 61)
    claim = try_claim(tmp_path / "cell")
    assert claim is not None and read_claim(tmp_path / "cell").token == claim.info.token
    claim.release()


def test_the_claim_of_an_exited_process_of_this_host_is_taken_over(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    plant_claim(tmp_path / "cell", host=socket.gethostname(), pid=int(finished.stdout))
    claim = try_claim(tmp_path / "cell")
    assert claim is not None
    claim.release()


def test_a_requeued_job_takes_its_own_claim_back(tmp_path: Path) -> None:
    plant_claim(tmp_path / "cell", job="slurm:42_3")
    assert try_claim(tmp_path / "cell", job="slurm:42_4") is None
    claim = try_claim(tmp_path / "cell", job="slurm:42_3")
    assert claim is not None
    claim.release()


def test_the_heartbeat_keeps_the_lease_alive(tmp_path: Path) -> None:
    claim = try_claim(tmp_path / "cell", lease=0.6)
    first = read_claim(tmp_path / "cell").heartbeat
    deadline = time.monotonic() + 10
    while read_claim(tmp_path / "cell").heartbeat == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_claim(tmp_path / "cell").heartbeat > first
    assert read_claim(tmp_path / "cell").token == claim.info.token
    claim.release()


def test_many_contenders_for_a_stale_claim_yield_one_holder(tmp_path: Path) -> None:
    plant_claim(tmp_path / "cell", heartbeat=time.time() - 61)
    start = threading.Barrier(8)
    won = []

    def contend() -> None:
        start.wait()
        claim = try_claim(tmp_path / "cell")
        if claim is not None:
            won.append(claim)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert read_claim(tmp_path / "cell").token == won[0].info.token
    won[0].release()
