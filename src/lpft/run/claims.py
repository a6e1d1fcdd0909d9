"""Per-cell claims with a lease: how jobs sharing one run directory avoid running a cell twice.

A claim is ``claim.json`` in the cell's directory, holding who runs the cell (host, pid, a random
token) and when it last said so (``heartbeat``). It is created complete and exclusively: written
to a private temporary file, then hard-linked to ``claim.json``, which fails if the name exists.
The holder rewrites the heartbeat every third of the lease; a claim whose heartbeat is older than
its lease belongs to a dead or stuck holder and may be taken over, as may one whose holder was a
process of this host that has exited, or the same scheduler job (requeued after preemption).
Taking over is itself exclusive: only the process that creates ``claim.json.break-<token>`` for
that stale token may remove it, so two launchers that both see the same stale claim cannot both
win.

This works on any file system with atomic ``link`` and ``O_EXCL`` (local disks, NFSv3+, Lustre,
GPFS); clocks of the hosts must agree to well within the lease.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lpft.io import atomic_write_json

CLAIM = "claim.json"
DEFAULT_LEASE_SECONDS = 120.0


@dataclass
class ClaimInfo:
    host: str
    pid: int
    token: str
    heartbeat: float
    lease: float
    job: str = ""

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) - self.heartbeat > self.lease

    def stale(self) -> bool:
        """Expired, or held by a process of this host that no longer exists."""
        return self.expired() or (self.host == socket.gethostname() and not _alive(self.pid))

    def where(self) -> str:
        job = f", job {self.job}" if self.job else ""
        return f"{self.host} pid {self.pid}{job}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_claim(cell_dir: Path) -> ClaimInfo | None:
    """The current claim of a cell, or None when unclaimed (or the file is unreadable)."""
    try:
        data: dict[str, Any] = json.loads((Path(cell_dir) / CLAIM).read_text())
        return ClaimInfo(**data)
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def _create_exclusively(path: Path, info: ClaimInfo) -> bool:
    """Write ``info`` to ``path`` only if ``path`` does not exist; readers never see it half."""
    temporary = path.with_name(f".{path.name}.{info.token}.tmp")
    temporary.write_text(json.dumps(asdict(info)))
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def _break_stale(cell_dir: Path, stale: ClaimInfo) -> None:
    """Remove ``stale`` from ``cell_dir`` if this process wins the right to; else do nothing."""
    marker = Path(cell_dir) / f"{CLAIM}.break-{stale.token}"
    try:
        handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    os.close(handle)
    current = read_claim(cell_dir)
    if current is not None and current.token == stale.token:
        (Path(cell_dir) / CLAIM).unlink(missing_ok=True)
    marker.unlink(missing_ok=True)


class CellClaim:
    """A held claim; keeps its lease alive from a background thread until released."""

    def __init__(self, cell_dir: Path, info: ClaimInfo) -> None:
        self.cell_dir = Path(cell_dir)
        self.info = info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self.lost = False

    def _beat(self) -> None:
        while not self._stop.wait(self.info.lease / 3):
            current = read_claim(self.cell_dir)
            if current is None or current.token != self.info.token:
                self.lost = True
                return
            self.info.heartbeat = time.time()
            try:
                atomic_write_json(self.cell_dir / CLAIM, asdict(self.info))
            except OSError:
                continue  # e.g. the temporary file swept away meanwhile: beat again later

    def start(self) -> None:
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the claim if it is still ours."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        current = read_claim(self.cell_dir)
        if current is not None and current.token == self.info.token:
            (self.cell_dir / CLAIM).unlink(missing_ok=True)

    def __enter__(self) -> CellClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_claim(
    cell_dir: Path, lease: float = DEFAULT_LEASE_SECONDS, job: str = ""
) -> CellClaim | None:
    """Claim ``cell_dir`` for this process, or return None when a live holder has it."""
    cell_dir = Path(cell_dir)
    cell_dir.mkdir(parents=True, exist_ok=True)
    info = ClaimInfo(
        host=socket.gethostname(),
        pid=os.getpid(),
        token=uuid.uuid4().hex,
        heartbeat=time.time(),
        lease=lease,
        job=job,
    )
    for _attempt in range(3):
        if _create_exclusively(cell_dir / CLAIM, info):
            claim = CellClaim(cell_dir, info)
            claim.start()
            return claim
        current = read_claim(cell_dir)
        requeued = current is not None and bool(job) and current.job == job
        if current is not None and not (requeued or current.stale()):
            return None
        if current is not None:
            _break_stale(cell_dir, current)
        # None: the holder released it between our two looks; try again.
    return None
