"""One attempt at one cell, inside its claim: fenced writes and the attempt on record.

While an attempt holds its cell's claim, every atomic write under the cell directory checks
that the claim is still its own before renaming into place (``lpft.io.fenced``), and the thread
running the cell is interrupted with ``ClaimLost`` once the heartbeat sees the claim gone: a
process that lost its cell writes nothing more there.

Each cell directory keeps ``attempts.jsonl``, one line per attempt: token, job, host, pid, start,
end and outcome (``fitted``, ``failed``, ``diverged``, ``lost-claim``, ``preempted``). A holder
writes its own line as soon as its fit is recorded (then evaluates; a failure there adds a
``failed`` line), or when it fails; the line of a holder that was taken over before that
(killed, stopped past its lease, preempted) is written by the process that took the cell over.
An attempt that only evaluates a fitted cell adds no line. A failed attempt also leaves
``error.json`` (why), which the next successful attempt removes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from lpft.io import (
    atomic_write_json,
    check_fences,
    fenced,
    read_json,
    remove_orphaned_temporaries,
)
from lpft.methods import method_for
from lpft.run.claims import CLAIM, HEARTBEAT, CellClaim, ClaimInfo, ClaimLost, try_claim
from lpft.run.plan import RunPlan
from lpft.run.rundir import RunDirectory

ATTEMPTS = "attempts.jsonl"
ERROR = "error.json"
OUTCOMES = ("fitted", "failed", "diverged", "lost-claim", "preempted")
# What an attempt never deletes when it clears a cell's partial outputs.
RECORDS = frozenset({CLAIM, ATTEMPTS, ERROR, "fit.json", "metrics.json"})


def append_attempt(cell_dir: Path, info: ClaimInfo, outcome: str, end: float) -> None:
    """Add one line to the cell's ``attempts.jsonl`` (a single appending write, fsynced)."""
    record = {
        "token": info.token,
        "job": info.job,
        "host": info.host,
        "pid": info.pid,
        "start": info.start,
        "end": end,
        "outcome": outcome,
    }
    handle = os.open(Path(cell_dir) / ATTEMPTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, (json.dumps(record) + "\n").encode())
        os.fsync(handle)
    finally:
        os.close(handle)


def read_attempts(cell_dir: Path) -> list[dict[str, Any]]:
    """The cell's attempts, oldest first (an unreadable line is skipped)."""
    path = Path(cell_dir) / ATTEMPTS
    if not path.is_file():
        return []
    attempts = []
    for line in path.read_text().splitlines():
        try:
            attempts.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return attempts


def read_error(cell_dir: Path) -> str | None:
    path = Path(cell_dir) / ERROR
    return read_json(path).get("error", "") if path.is_file() else None


def error_line(exc: BaseException) -> str:
    """``Type: last line of the message``."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


class CellAttempt:
    """Holds a cell's claim; inside ``running()``, writes under the cell are fenced and the
    thread is interrupted when the claim is lost. ``finish(outcome)`` puts it on record."""

    def __init__(self, claim: CellClaim) -> None:
        self.claim = claim
        self.cell_dir = claim.cell_dir
        self.finished = False

    @contextmanager
    def running(self) -> Iterator[None]:
        """Fenced, interruptible work on the cell. An exception other than ``ClaimLost`` is put
        on record (``error.json``, a ``failed`` attempt) if the claim is still ours."""
        with ExitStack() as stack:
            stack.enter_context(fenced(self.cell_dir, self.claim.check))
            stack.enter_context(self.claim.interruptible())
            try:
                yield
            except ClaimLost:
                raise
            except Exception as exc:
                self._record_failure(exc)
                raise

    def _record_failure(self, exc: Exception) -> None:
        self.claim.check()
        atomic_write_json(
            self.cell_dir / ERROR,
            {"error": error_line(exc), "host": socket.gethostname(), "time": time.time()},
        )
        self.finish("failed")

    def finish(self, outcome: str) -> None:
        """Record how this attempt ended (once); a success clears an earlier ``error.json``."""
        self.claim.check()
        if outcome != "failed":
            (self.cell_dir / ERROR).unlink(missing_ok=True)
        append_attempt(self.cell_dir, self.claim.info, outcome, time.time())
        self.finished = True


@contextmanager
def attempt_cell(
    cell_dir: Path, lease: float, job: str = "", wait: bool = False
) -> Iterator[CellAttempt | None]:
    """Claim ``cell_dir`` and yield the attempt, or None when a live holder has it.

    Taking over a stale claim puts the previous holder's attempt on record first."""
    claim = try_claim(cell_dir, lease, job, wait=wait)
    if claim is None:
        yield None
        return
    with claim:
        takeover = claim.takeover
        if takeover is not None and takeover.previous is not None:
            append_attempt(cell_dir, takeover.previous, takeover.outcome, time.time())
        remove_orphaned_temporaries(cell_dir)
        yield CellAttempt(claim)


def clear_partial_outputs(cell_dir: Path) -> None:
    """Delete what a diverged fit left in its cell (checkpoints), keeping the records, the claim
    and other processes' files; fenced like a write (nothing is deleted by a lost holder)."""
    check_fences(Path(cell_dir))
    for path in Path(cell_dir).iterdir():
        if path.name in RECORDS or path.name.startswith((f"{CLAIM}.", HEARTBEAT, ".")):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def release_artifacts(plan: RunPlan, rundir: RunDirectory, keys: list[str]) -> None:
    """Let each evaluated cell of ``keys`` delete its checkpoints once no pending cell needs
    them (``RunPlan.releasable``)."""
    fitted = {c.key for c in plan.cells if (rundir.root / "cells" / c.key / "fit.json").is_file()}
    for key in keys:
        planned = plan.cell(key)
        record = rundir.cell(planned.method, planned.seed, planned.hparams)
        if record.status != "done" or record.metrics is None:
            continue
        if plan.releasable(key, fitted):
            method_for(planned.method).release(record.directory, record.candidates)
