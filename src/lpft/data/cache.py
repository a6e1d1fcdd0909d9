"""Generated datasets cached on disk under ``$LPFT_HOME`` (default ``~/.cache/lpft``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lpft.errors import DataError
from lpft.io import atomic_write_json


def lpft_home() -> Path:
    return Path(os.environ.get("LPFT_HOME", Path.home() / ".cache" / "lpft")).expanduser()


def cache_key(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def cached_arrays(
    root: Path, name: str, spec: dict[str, Any], generate: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Load the arrays generated for ``spec``, generating them once if absent.

    Arrays are stored one ``.npy`` file each (byte-reproducible) in a directory that is built
    under a temporary name and renamed into place, so a crash never leaves a partial cache.
    """
    directory = Path(root) / name / cache_key(spec)
    meta_path = directory / "meta.json"
    if meta_path.is_file():
        try:
            names = json.loads(meta_path.read_text())["arrays"]
            return {n: np.load(directory / f"{n}.npy") for n in names}
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(
                f"generated-data cache {directory} is damaged ({type(exc).__name__}); "
                "delete that directory to regenerate it"
            ) from None
    arrays = generate()
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        for array_name, array in arrays.items():
            np.save(staging / f"{array_name}.npy", array, allow_pickle=False)
        atomic_write_json(staging / "meta.json", {"spec": spec, "arrays": list(arrays)})
        try:
            os.rename(staging, directory)
        except OSError:
            if not meta_path.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return arrays
