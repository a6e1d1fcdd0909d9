"""Crash-safe writes and the run lock."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lpft.errors import RunLockedError
from lpft.io import (
    DEFAULT_FILE_MODE,
    atomic_torch_save,
    atomic_write_text,
    remove_stale_temporaries,
    run_lock,
)


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "results.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]
    assert stat.S_IMODE(target.stat().st_mode) == DEFAULT_FILE_MODE


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "state.pt"
    atomic_write_text(target, "good")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_torch_save(target, {"x": Unpicklable()})
    assert target.read_text() == "good"
    assert len(list(tmp_path.iterdir())) == 1


def test_checkpoint_bytes_do_not_depend_on_the_path(tmp_path: Path) -> None:
    payload = {"weights": list(range(10))}
    atomic_torch_save(tmp_path / "a.pt", payload)
    atomic_torch_save(tmp_path / "other" / "b.pt", payload)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other" / "b.pt").read_bytes()


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "best.pt").write_bytes(b"keep")
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_second_holder_of_the_run_lock_is_refused(tmp_path: Path) -> None:
    refused = pytest.raises(RunLockedError, match=f"in use by pid {os.getpid()}")
    with run_lock(tmp_path), refused, run_lock(tmp_path):
        pass
    with run_lock(tmp_path):
        pass
