"""Per-cell claims with a lease: how processes sharing one run directory avoid running a cell
twice, and how one that lost its cell stops writing.

A claim is ``claim.json`` in the cell's directory: who runs the cell (a random token, host, pid
and the scheduler's id of the job: Slurm job / array task, Ray task) and its lease. It is
written once, complete and fsynced, to a private temporary file and hard-linked to
``claim.json``, which fails if the name exists; it is never rewritten. The holder shows it is
alive by rewriting its own ``heartbeat.<token>`` every third of the lease.

Staleness is judged on the clock of the process that wants the cell: a claim whose heartbeat it
has seen unchanged for the lease (an unreadable ``claim.json`` likewise) may be taken over, at
once when the holder is a process of this host that has exited, or the same Slurm job before
it was requeued (after preemption or a time-out: a higher ``SLURM_RESTART_COUNT``). No two
hosts' clocks are compared.

Removing a claim, by its holder or by a taker, is exclusive: only the process that creates
``claim.json.break-<token>`` may remove the claim with that token, and it checks the token while
holding that marker, so a claim made meanwhile by someone else is never removed.

A holder whose claim is gone has lost the cell: ``check`` raises ``ClaimLost``, and the heartbeat
thread raises it in the thread running the cell (``interruptible``), within one heartbeat.

This works on any file system with atomic ``link``, ``rename`` and ``O_EXCL`` (local disks,
NFSv3+, Lustre, GPFS).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from lpft.io import fsync_directory, process_alive

CLAIM = "claim.json"
HEARTBEAT = "heartbeat."
DEFAULT_LEASE_SECONDS = 120.0
UNREADABLE = "unreadable-"


class ClaimLost(RuntimeError):
    """This process's claim on a cell was taken over: it must write nothing more there."""


@dataclass
class ClaimInfo:
    token: str
    host: str
    pid: int
    job: str
    start: float  # the holder's clock; shown, never compared with another host's
    lease: float
    restart: int = 0  # how often the scheduler has requeued ``job`` (SLURM_RESTART_COUNT)

    def where(self) -> str:
        job = f", job {self.job}" if self.job else ""
        return f"{self.host} pid {self.pid}{job}"

    def requeued_as(self, other: ClaimInfo) -> bool:
        """``other`` is this claim's scheduler job, requeued since (e.g. after preemption)."""
        return bool(self.job) and self.job == other.job and self.restart < other.restart

    def holder_exited(self) -> bool:
        """The holder was a process of this host that no longer exists."""
        return self.host == socket.gethostname() and not process_alive(self.pid)


# A claim written by another lpft version may carry more fields: those are ignored.
CLAIM_FIELDS = frozenset(f.name for f in fields(ClaimInfo))


def scheduler_job() -> str:
    """The scheduler's id of the job this process runs in: a Ray task, a Slurm array task or
    job, or "" outside a scheduler."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        task = ray.get_runtime_context().get_task_id()
        if task:
            return f"ray:{task}"
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"slurm:{array_job}_{task}"
    job = os.environ.get("SLURM_JOB_ID")
    return f"slurm:{job}" if job else ""


def _read(cell_dir: Path) -> tuple[str | None, ClaimInfo | None]:
    """(identity, claim) of ``cell_dir``: identity None when unclaimed; claim None when the file
    is empty or unparsable (its identity then names its content)."""
    try:
        raw = (Path(cell_dir) / CLAIM).read_bytes()
    except FileNotFoundError:
        return None, None
    try:
        data = json.loads(raw)
        info = ClaimInfo(**{k: v for k, v in data.items() if k in CLAIM_FIELDS})
        return info.token, info
    except (ValueError, TypeError, AttributeError):
        return UNREADABLE + hashlib.sha256(raw).hexdigest()[:16], None


def read_claim(cell_dir: Path) -> ClaimInfo | None:
    """The current claim of a cell, or None when unclaimed (or the file is unreadable)."""
    return _read(cell_dir)[1]


def holder_token(cell_dir: Path) -> str | None:
    """What identifies the current claim (its token), None when unclaimed."""
    return _read(cell_dir)[0]


def _heartbeat_path(cell_dir: Path, token: str) -> Path:
    return Path(cell_dir) / f"{HEARTBEAT}{token}"


def _heartbeat(cell_dir: Path, token: str) -> str:
    try:
        return _heartbeat_path(cell_dir, token).read_text()
    except FileNotFoundError:
        return ""


def _write_heartbeat(cell_dir: Path, token: str, beat: int) -> None:
    path = _heartbeat_path(cell_dir, token)
    temporary = path.with_name(f".{path.name}.next")
    with open(temporary, "w") as handle:
        handle.write(str(beat))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class ClaimWatch:
    """What this process has seen of cells' claims, timed on its own monotonic clock."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def unchanged_for(self, cell_dir: Path, identity: str) -> float:
        """Seconds since this process first saw the claim ``identity`` with its current
        heartbeat (0 on first sight or after any change)."""
        state = f"{identity}:{_heartbeat(cell_dir, identity)}"
        now = time.monotonic()
        with self._lock:
            previous = self._seen.get(Path(cell_dir))
            if previous is None or previous[0] != state:
                self._seen[Path(cell_dir)] = (state, now)
                return 0.0
            return now - previous[1]

    def stale(self, cell_dir: Path, identity: str, info: ClaimInfo | None, lease: float) -> bool:
        """The holder exited, or its heartbeat has not changed for its lease."""
        unchanged = self.unchanged_for(cell_dir, identity)
        if info is not None and info.holder_exited():
            return True
        return unchanged >= (info.lease if info is not None else lease)


WATCH = ClaimWatch()


def claim_is_live(cell_dir: Path) -> ClaimInfo | None:
    """The current claim when it may be live as far as this process can tell at once: held,
    and not by an exited process of this host (what ``lpft status`` calls running)."""
    identity, info = _read(cell_dir)
    if identity is None or info is None or info.holder_exited():
        return None
    return info


def _create_exclusively(path: Path, info: ClaimInfo) -> bool:
    """Write ``info`` to ``path`` only if ``path`` does not exist; readers never see it half."""
    temporary = path.with_name(f".{path.name}.{info.token}.new")
    with open(temporary, "w") as handle:
        handle.write(json.dumps(asdict(info)))
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, path)
        fsync_directory(path.parent)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def remove_claim(cell_dir: Path, identity: str) -> bool:
    """Remove the claim ``identity`` from ``cell_dir`` if this process wins the right to (the
    marker for that identity) and it is still the claim there; True when removed."""
    cell_dir = Path(cell_dir)
    marker = cell_dir / f"{CLAIM}.break-{identity}"
    try:
        handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(handle)
    try:
        # While we hold the marker nobody else removes this claim, and no new claim can be made
        # before it is gone: what we read here is what we remove.
        if holder_token(cell_dir) != identity:
            return False
        (cell_dir / CLAIM).unlink()
        fsync_directory(cell_dir)
        _heartbeat_path(cell_dir, identity).unlink(missing_ok=True)
        return True
    finally:
        marker.unlink(missing_ok=True)


@dataclass
class Takeover:
    """The claim a new holder replaced, and how its attempt ended (lost-claim / preempted);
    None for an unreadable claim."""

    previous: ClaimInfo | None
    outcome: str


def _interrupt(thread_id: int) -> None:
    """Raise ``ClaimLost`` in the thread ``thread_id`` at its next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(ClaimLost)
    )


class CellClaim:
    """A held claim; keeps its lease alive from a background thread until released."""

    def __init__(self, cell_dir: Path, info: ClaimInfo, takeover: Takeover | None = None) -> None:
        self.cell_dir = Path(cell_dir)
        self.info = info
        self.takeover = takeover
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._guarded: int | None = None
        self._guard_lock = threading.Lock()

    def _beat(self) -> None:
        beat = 0
        while not self._stop.wait(self.info.lease / 3):
            if holder_token(self.cell_dir) != self.info.token:
                self._lose()
                return
            beat += 1
            with contextlib.suppress(OSError):
                _write_heartbeat(self.cell_dir, self.info.token, beat)

    def _lose(self) -> None:
        with self._guard_lock:
            self.lost = True
            if self._guarded is not None:
                _interrupt(self._guarded)
                self._guarded = None

    def check(self) -> None:
        """Raise ``ClaimLost`` unless ``claim.json`` is still this claim."""
        if self.lost or holder_token(self.cell_dir) != self.info.token:
            self.lost = True
            raise ClaimLost(f"{self.cell_dir}: claim taken over by another job; stopping")

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Inside, the calling thread gets ``ClaimLost`` as soon as the heartbeat sees the
        claim gone (it stops within one heartbeat, wherever it is)."""
        with self._guard_lock:
            if self.lost:
                raise ClaimLost(f"{self.cell_dir}: claim taken over by another job; stopping")
            self._guarded = threading.get_ident()
        try:
            yield
        finally:
            with self._guard_lock:
                self._guarded = None

    def start(self) -> None:
        _write_heartbeat(self.cell_dir, self.info.token, 0)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the claim if it is still ours."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        if not remove_claim(self.cell_dir, self.info.token):
            self.lost = True

    def __enter__(self) -> CellClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def new_claim_info(lease: float, job: str = "") -> ClaimInfo:
    """This process's identity for one attempt: a fresh token, host, pid, scheduler job."""
    return ClaimInfo(
        token=uuid.uuid4().hex,
        host=socket.gethostname(),
        pid=os.getpid(),
        job=job or scheduler_job(),
        start=time.time(),
        lease=lease,
        restart=int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
    )


def try_claim(
    cell_dir: Path,
    lease: float = DEFAULT_LEASE_SECONDS,
    job: str = "",
    wait: bool = False,
    poll: float = 0.2,
) -> CellClaim | None:
    """Claim ``cell_dir`` for this process, or return None when a live holder has it.

    A holder is live until this process has seen its heartbeat unchanged for the lease. With
    ``wait`` a claim seen for the first time is watched (up to its lease) instead of being
    taken for live at once; None as soon as the holder shows it is alive."""
    cell_dir = Path(cell_dir)
    cell_dir.mkdir(parents=True, exist_ok=True)
    info = new_claim_info(lease, job)
    takeover: Takeover | None = None
    watched: str | None = None
    while True:
        if _create_exclusively(cell_dir / CLAIM, info):
            claim = CellClaim(cell_dir, info, takeover)
            claim.start()
            return claim
        identity, current = _read(cell_dir)
        if identity is None:
            continue  # released between our two looks
        requeued = current is not None and current.requeued_as(info)
        if requeued or WATCH.stale(cell_dir, identity, current, lease):
            if remove_claim(cell_dir, identity):
                takeover = Takeover(current, "preempted" if requeued else "lost-claim")
            continue
        state = f"{identity}:{_heartbeat(cell_dir, identity)}"
        if not wait or (watched is not None and watched != state):
            return None
        watched = state
        time.sleep(poll)


def held_live(cell_dir: Path, lease: float) -> bool:
    """A claim is on ``cell_dir`` that this process has not (yet) seen go stale."""
    identity, info = _read(cell_dir)
    return identity is not None and not WATCH.stale(cell_dir, identity, info, lease)
