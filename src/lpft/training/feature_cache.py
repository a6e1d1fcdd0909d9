"""Pretrained features on disk: extracted once per key, memory-mapped on every later read.

An entry is a directory ``<root>/<digest>/`` holding ``features.npy``, ``labels.npy``, one
``block-<name>.npy`` per pooled block output when those were asked for, and ``key.json``. The
key names everything the numbers depend on: backbone spec and a sha256 of its weights, benchmark
(name and options) and split, a fingerprint of the split's data (``lpft.data.fingerprint``: files'
sizes and modification times, or in-memory arrays' bytes; None where the dataset cannot say), the
transform, the storage dtype, the compute precision and, for augmented features, the seed and
pass. Any change gives another digest, so stale entries are never read.

Writes are atomic: an entry is built in a temporary directory (rows written straight into
memory-mapped ``.npy`` files, so extraction never holds a split in memory) and renamed into place
only when complete. Several processes may share the cache (jobs of one launch, runs started
together): a temporary directory is named after its owner (``.<digest>.<pid>@<host>.<random>
.tmp``), and opening the cache removes only those whose owner is gone: a process of this host
that no longer exists, or, for another host's (or an unnamed one), nothing written for
``STALE_SECONDS``. Two processes extracting the same key both finish; the first rename wins and
the other keeps it (the numbers are the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.lib import format as npy_format
from torch import nn

TEMPORARY_SUFFIX = ".tmp"
FEATURES = "features.npy"
LABELS = "labels.npy"
KEY = "key.json"
BLOCK_PREFIX = "block-"
# Another host's temporary directory with nothing written for this long is taken as abandoned.
STALE_SECONDS = 2 * 24 * 3600
OWNED_TEMPORARY = re.compile(r"^\.[0-9a-f]+\.(?P<pid>\d+)@(?P<host>.+)\.[^.]+\.tmp$")


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class FeatureKey:
    """Everything a split's pretrained features depend on."""

    backbone: str
    weights_sha256: str
    benchmark: str
    split: str
    transform: str
    dtype: str = "float32"
    precision: str = "fp32"
    seed: int | None = None
    augment_pass: int | None = None
    with_blocks: bool = False
    data: str | None = None
    # Channels-last convolutions round differently (~1e-6 on CPU) from the default layout.
    channels_last: bool = False

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class CachedFeatures:
    """An entry's arrays, memory-mapped read-only (labels in memory)."""

    features: np.ndarray
    labels: np.ndarray
    blocks: dict[str, np.ndarray] = field(default_factory=dict)
    directory: Path | None = None

    def feature_chunks(self) -> NpyRowChunks:
        """The features as blocks of rows read from the file, never all in memory at once."""
        if self.directory is None:
            raise ValueError("only an entry on disk can be read in chunks")
        return NpyRowChunks(self.directory / FEATURES)


class FeatureCache:
    """Entries under ``root``; ``get_or_extract`` is the one way in."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Temporary directories whose owner is gone (see the module docstring)."""
        for temporary in self.root.glob(f".*{TEMPORARY_SUFFIX}"):
            if owner_gone(temporary):
                shutil.rmtree(temporary, ignore_errors=True)

    def lookup(self, key: FeatureKey) -> CachedFeatures | None:
        """The entry for ``key``, or None; an entry whose key file disagrees is ignored."""
        directory = self.root / key.digest()
        try:
            stored = json.loads((directory / KEY).read_text())
        except (OSError, ValueError):
            return None
        if stored != asdict(key):
            return None
        blocks = {
            path.stem[len(BLOCK_PREFIX) :]: np.load(path, mmap_mode="r")
            for path in sorted(directory.glob(f"{BLOCK_PREFIX}*.npy"))
        }
        return CachedFeatures(
            np.load(directory / FEATURES, mmap_mode="r"),
            np.load(directory / LABELS),
            blocks,
            directory,
        )

    def get_or_extract(
        self,
        key: FeatureKey,
        rows: int,
        batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]],
    ) -> CachedFeatures:
        """Read the entry for ``key``, extracting it first from ``batches()`` if absent.

        ``batches`` yields (features, labels, pooled blocks) per batch, ``rows`` in total.
        """
        found = self.lookup(key)
        if found is not None:
            return found
        prefix = f".{key.digest()}.{os.getpid()}@{socket.gethostname()}."
        temporary = Path(tempfile.mkdtemp(dir=self.root, prefix=prefix, suffix=TEMPORARY_SUFFIX))
        try:
            _write_entry(temporary, key, rows, batches())
            self._publish(temporary, key)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        found = self.lookup(key)
        if found is None:
            raise OSError(f"{self.root / key.digest()}: feature cache entry unreadable after write")
        return found

    def _publish(self, temporary: Path, key: FeatureKey) -> None:
        """Rename a complete entry into place. If another process published the same key
        meanwhile, its entry (same numbers) is kept; an unreadable one is replaced."""
        target = self.root / key.digest()
        try:
            os.replace(temporary, target)
        except OSError:
            if self.lookup(key) is not None:
                return
            shutil.rmtree(target, ignore_errors=True)
            os.replace(temporary, target)


def owner_gone(temporary: Path) -> bool:
    """Whether the process that made ``temporary`` has certainly stopped writing to it."""
    owner = OWNED_TEMPORARY.match(temporary.name)
    if owner is not None and owner["host"] == socket.gethostname():
        return not process_alive(int(owner["pid"]))
    return time.time() - last_written(temporary) > STALE_SECONDS


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def last_written(directory: Path) -> float:
    """The newest modification time of ``directory`` and the files in it (0 if gone)."""
    times = []
    for path in [directory, *directory.glob("*")]:
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    return max(times, default=0.0)


class _RowWriter:
    """Rows appended to a memory-mapped ``.npy`` file whose row count is known in advance."""

    def __init__(self, path: Path, rows: int, dtype: str) -> None:
        self.path, self.rows, self.dtype = path, rows, dtype
        self.array: np.ndarray | None = None
        self.filled = 0

    def append(self, values: np.ndarray) -> None:
        if self.array is None:
            shape = (self.rows, *values.shape[1:])
            self.array = npy_format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=shape)
        self.array[self.filled : self.filled + len(values)] = values
        self.filled += len(values)

    def close(self) -> None:
        if self.filled != self.rows or self.array is None:
            raise RuntimeError(f"{self.path.name}: wrote {self.filled} rows of {self.rows}")
        self.array.flush()
        del self.array
        _fsync(self.path)


def _write_entry(
    directory: Path,
    key: FeatureKey,
    rows: int,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]],
) -> None:
    features = _RowWriter(directory / FEATURES, rows, key.dtype)
    labels: list[np.ndarray] = []
    blocks: dict[str, _RowWriter] = {}
    for batch_features, batch_labels, batch_blocks in batches:
        features.append(batch_features.float().cpu().numpy())
        labels.append(batch_labels.cpu().numpy())
        for name, values in batch_blocks.items():
            writer = blocks.setdefault(
                name, _RowWriter(directory / f"{BLOCK_PREFIX}{name}.npy", rows, key.dtype)
            )
            writer.append(values.float().cpu().numpy())
    for writer in [features, *blocks.values()]:
        writer.close()
    np.save(directory / LABELS, np.concatenate(labels) if labels else np.zeros(0, np.int64))
    _fsync(directory / LABELS)
    (directory / KEY).write_text(json.dumps(asdict(key), indent=2) + "\n")
    _fsync(directory / KEY)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle, contextlib.suppress(OSError):
        os.fsync(handle.fileno())


class NpyRowChunks:
    """A ``ChunkSource`` over a 2-D ``.npy`` file: blocks of rows read into one reused buffer.

    Reading with ``readinto`` rather than slicing a memory map keeps the resident set at one
    block, however many rows the file has (mapped pages would count towards it).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = npy_format.read_magic(handle)
            read_header = (
                npy_format.read_array_header_1_0
                if version == (1, 0)
                else npy_format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
            self.offset = handle.tell()
        if len(shape) != 2 or fortran:
            raise ValueError(f"{self.path}: expected a C-ordered 2-D array, got shape {shape}")
        self.rows, self.dim = shape
        self.dtype = np.dtype(dtype)

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        buffer = np.empty((size, self.dim), dtype=self.dtype)
        converted = np.empty((size, self.dim), dtype=np.float32)
        with open(self.path, "rb", buffering=0) as handle:
            handle.seek(self.offset)
            for start in range(0, self.rows, size):
                count = min(size, self.rows - start)
                view = memoryview(buffer[:count]).cast("B")
                read = 0
                while read < len(view):
                    got = handle.readinto(view[read:])
                    if not got:
                        raise OSError(f"{self.path}: ended after {start} rows of {self.rows}")
                    read += got
                converted[:count] = buffer[:count]
                yield converted[:count]
