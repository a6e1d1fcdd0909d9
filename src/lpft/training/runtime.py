"""Devices, seeds and determinism switches shared by the engine."""

from __future__ import annotations

import os
import random
import zlib

import numpy as np
import torch

from lpft.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but CUDA is not available (use auto or cpu)")
    return torch.device(name)


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (unlike ``hash``, identical across processes)."""
    return zlib.crc32(repr(parts).encode()) & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure_determinism(enabled: bool) -> None:
    """Deterministic kernels where PyTorch has them.

    On CPU this makes a run bitwise reproducible. On CUDA it also needs cuBLAS' workspace
    setting (set here before the first CUDA call) and still differs across GPU models and
    library versions.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled


def rng_state() -> dict[str, object]:
    """Python, NumPy and torch RNG states in types ``torch.load(weights_only=True)`` accepts."""
    version, words, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, object] = {
        "python": [version, list(words), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, object]) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
