"""Checkpoints written behind training.

At an epoch end the state is copied to host memory at once (so training can go on changing the
live tensors), then serialised and written atomically on one background thread while the next
epoch trains. Writes keep their order; a file's next write waits for its last one, so memory
holds at most one extra copy of each file's state. ``wait`` returns when every write is on disk
and re-raises the first one that failed.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from lpft.io import atomic_torch_save


def host_copy(value: Any) -> Any:
    """``value`` with every tensor copied to host memory (dicts, lists and tuples followed)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: host_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(host_copy(item) for item in value)
    return value


class BackgroundWriter:
    """Ordered atomic ``torch.save`` on a background thread, at most one write per file queued."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpft-checkpoint")
        self._pending: dict[Path, Future] = {}

    def save(self, path: Path, snapshot: Any) -> None:
        """Queue ``snapshot`` (already a host copy) for ``path``, after the file's last write."""
        earlier = self._pending.pop(path, None)
        if earlier is not None:
            earlier.result()
        self._pending[path] = self._executor.submit(atomic_torch_save, path, snapshot)

    def wait(self) -> None:
        """Every queued write on disk; the first failure is raised."""
        pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)
