"""What a split's data is, as a short digest: part of the feature cache's key.

The benchmark's name, options and data root say which data a run asked for; the fingerprint says
what that data is now, so that images replaced or edited in place under the same root are
extracted again instead of being served stale features.

The hook: a dataset may define ``fingerprint() -> str | None`` and say itself what identifies its
content (``lpft.data.fmow.WildsImages`` does). Without it, ``dataset_fingerprint`` applies these
rules, first match wins:

- ``torch.utils.data.Subset`` / ``ConcatDataset``: the parts' fingerprints and the indices;
- file-backed: a ``samples`` or ``imgs`` list of ``(path, label)`` (``ImageFileDataset``, hence the
  folder benchmark, ImageNet, BREEDS and DomainNet; torchvision's ``ImageFolder``): sha256 over
  each file's path relative to the files' common folder, its size, its ``mtime_ns`` and its label,
  in dataset order. One ``stat`` per file, no image byte read;
- in memory: a dataset holding its inputs as an array or tensor attribute with one row per example
  and at least two dimensions (digits-shift's glyphs, CIFAR's ``ArrayImageDataset``,
  ``TensorDataset``): sha256 over every array, tensor and list-of-numbers attribute;
- anything else: None. The cache then keys the split by benchmark name, options and data root only,
  and a change of its data in place goes unnoticed.

Limits of the file rule: a file rewritten with the same size whose modification time is kept or
restored (``cp -p``, ``rsync -t``, ``touch -r``) reads as unchanged; so does one rewritten twice
within the file system's timestamp granularity at the same size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

# os.stat releases the GIL; threads hide the latency of network file systems.
STAT_THREADS = 16
STAT_CHUNK = 2048


def dataset_fingerprint(dataset: Dataset) -> str | None:
    """A sha256 of what ``dataset`` holds (see the module docstring), or None when unknown."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return own()
    if isinstance(dataset, Subset):
        return _subset_fingerprint(dataset)
    if isinstance(dataset, ConcatDataset):
        return _combined([dataset_fingerprint(part) for part in dataset.datasets])
    samples = _file_samples(dataset)
    if samples is not None:
        return files_fingerprint([path for path, _ in samples], [label for _, label in samples])
    if _holds_inputs_in_memory(dataset):
        return arrays_fingerprint(_array_attributes(dataset))
    return None


def files_fingerprint(paths: Sequence[str | os.PathLike], labels: Sequence[Any]) -> str:
    """sha256 over (relative path, size, mtime_ns, label) of every file, in order.

    Paths are taken relative to their common folder, so the digest does not depend on where the
    data root is mounted. A missing file is hashed as such (size and time -1).
    """
    names = [os.path.normpath(path) for path in paths]
    prefix = len(_common_folder(names))
    digest = hashlib.sha256(f"files|{len(names)}|".encode())
    chunks = [names[start : start + STAT_CHUNK] for start in range(0, len(names), STAT_CHUNK)]
    with ThreadPoolExecutor(max_workers=STAT_THREADS) as pool:
        stats = [stat for chunk in pool.map(_sizes_and_mtimes, chunks) for stat in chunk]
    for name, (size, mtime), label in zip(names, stats, labels, strict=True):
        digest.update(f"{name[prefix:]}|{size}|{mtime}|{label}\n".encode())
    return digest.hexdigest()


def arrays_fingerprint(arrays: dict[str, Any]) -> str:
    """sha256 over each named array's dtype, shape and bytes, in name order."""
    digest = hashlib.sha256(b"arrays|")
    for name in sorted(arrays):
        value = arrays[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous().numpy()
        value = np.ascontiguousarray(value)
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(memoryview(value.reshape(-1).view(np.uint8)))
    return digest.hexdigest()


def _common_folder(names: list[str]) -> str:
    """The folder all ``names`` lie in, with its trailing separator ("" if none)."""
    try:
        base = os.path.commonpath(names) if names else ""
    except ValueError:  # absolute and relative paths mixed
        return ""
    if len(names) == 1:
        base = os.path.dirname(base)
    return base if not base or base.endswith(os.sep) else base + os.sep


def _sizes_and_mtimes(paths: list[str]) -> list[tuple[int, int]]:
    found = []
    for path in paths:
        try:
            status = os.stat(path)
        except OSError:
            found.append((-1, -1))
        else:
            found.append((status.st_size, status.st_mtime_ns))
    return found


def _combined(parts: Sequence[str | None]) -> str | None:
    if any(part is None for part in parts):
        return None
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _subset_fingerprint(subset: Subset) -> str | None:
    inner = dataset_fingerprint(subset.dataset)
    if inner is None:
        return None
    indices = np.asarray(subset.indices, dtype=np.int64)
    return _combined([inner, arrays_fingerprint({"indices": indices})])


def _file_samples(dataset: Dataset) -> list[tuple[str, Any]] | None:
    for name in ("samples", "imgs"):
        samples = getattr(dataset, name, None)
        if isinstance(samples, list) and all(
            isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str | os.PathLike)
            for s in samples
        ):
            return samples
    return None


def _is_array(value: Any) -> bool:
    return isinstance(value, torch.Tensor) or (
        isinstance(value, np.ndarray) and value.dtype != object
    )


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(
        isinstance(v, int | float | np.integer | np.floating) for v in value
    )


def _array_attributes(dataset: Dataset) -> dict[str, Any]:
    if isinstance(dataset, TensorDataset):
        return {f"tensors[{i}]": tensor for i, tensor in enumerate(dataset.tensors)}
    arrays = {}
    for name, value in vars(dataset).items():
        if _is_array(value):
            arrays[name] = value
        elif _is_number_list(value):
            arrays[name] = np.asarray(value)
    return arrays


def _holds_inputs_in_memory(dataset: Dataset) -> bool:
    """True when an array attribute has one row per example and at least two dimensions."""
    try:
        rows = len(dataset)
    except TypeError:
        return False
    if isinstance(dataset, TensorDataset):
        return True
    return any(
        value.ndim >= 2 and value.shape[0] == rows for value in _array_attributes(dataset).values()
    )
