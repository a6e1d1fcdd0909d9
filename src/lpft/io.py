"""Crash-safe file writes and the run-directory lock."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from lpft.errors import LpftError, RunLockedError


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# What open() would give a new file (mkstemp alone makes it private, 0600). Read once at import:
# reading the umask means setting it, which must not race with other threads creating files.
DEFAULT_FILE_MODE = 0o666 & ~_read_umask()
TEMPORARY_SUFFIX = ".tmp"
# Directories whose writes are fenced: the check runs between writing a temporary file and
# renaming it into place, and raises when this process may no longer write there.
_FENCES: dict[Path, Callable[[], None]] = {}


@contextlib.contextmanager
def fenced(directory: Path, check: Callable[[], None]) -> Iterator[None]:
    """While inside, every atomic write under ``directory`` calls ``check`` before its rename,
    so a writer that lost the right to write (``check`` raises) leaves nothing behind."""
    directory = Path(directory).resolve()
    _FENCES[directory] = check
    try:
        yield
    finally:
        _FENCES.pop(directory, None)


def check_fences(path: Path) -> None:
    """Run the fence check of every fenced directory that holds ``path``."""
    resolved = Path(path).resolve()
    for directory, check in list(_FENCES.items()):
        if resolved.is_relative_to(directory):
            check()


def _temporary_owner() -> str:
    """Part of a temporary file's name saying which process writes it (host and pid)."""
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{_temporary_owner()}.", suffix=TEMPORARY_SUFFIX
    )
    try:
        os.fchmod(fd, DEFAULT_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        check_fences(path)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_directory(directory: Path) -> None:
    """Make a rename durable: a crash right after it must not bring the old file back."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def remove_stale_temporaries(directory: Path) -> None:
    """Delete half-written files a killed process left behind in ``directory``."""
    for stale in Path(directory).glob(f".*{TEMPORARY_SUFFIX}"):
        stale.unlink(missing_ok=True)


def remove_orphaned_temporaries(directory: Path) -> None:
    """Delete the temporary files in ``directory`` (and below) whose writer, a process of this
    host, has exited; those of live processes and of other hosts are left alone."""
    host = socket.gethostname().replace(".", "_")
    for temporary in Path(directory).rglob(f".*{TEMPORARY_SUFFIX}"):
        owner = temporary.name.rsplit(".", 3)[-3] if temporary.name.count(".") >= 3 else ""
        owner_host, _, pid = owner.rpartition("-")
        if owner_host == host and pid.isdigit() and not process_alive(int(pid)):
            temporary.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def atomic_write_yaml(path: Path, obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` through memory, so the archive's bytes do not depend on a temp name."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise LpftError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def ensure_free_space(directory: Path, needed_bytes: int, what: str) -> None:
    """Fail before writing when the disk cannot hold ``needed_bytes`` (with a 10% margin)."""
    directory = Path(directory)
    probe = directory
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes * 1.1:
        raise LpftError(
            f"not enough disk space in {directory} for {what}: "
            f"need {needed_bytes / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free"
        )


@contextlib.contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory``; a second run on the same directory fails fast."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / ".lock"
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the duration of the run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunLockedError(
            f"{directory} is in use by {holder}; wait for it to finish or choose another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
