"""Reading and writing backbone checkpoints (``file:`` specs and the shipped weights)."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lpft.errors import CheckpointError
from lpft.io import atomic_torch_save
from lpft.models.backbone import Backbone

CHECKPOINT_FORMAT = "lpft-backbone-v1"
SHOWN_KEYS = 5


def save_backbone_checkpoint(
    path: Path, arch: str, arch_kwargs: dict[str, Any], backbone: nn.Module
) -> str:
    """Write an lpft backbone checkpoint atomically; returns its sha256."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "state_dict": {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
    }
    atomic_torch_save(Path(path), payload)
    return sha256_of(Path(path))


def save_spec_checkpoint(path: Path, spec: str, backbone: Backbone) -> str:
    """Write the weights of a backbone built from a model spec (torchvision, timm, ...) so that
    ``file:PATH`` rebuilds ``spec`` with random weights and loads them; returns the sha256."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "spec": spec,
        "state_dict": {
            k: v.detach().cpu().clone() for k, v in backbone.weights_module().state_dict().items()
        },
    }
    atomic_torch_save(Path(path), payload)
    return sha256_of(Path(path))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_payload(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (no code runs); every failure names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle a user's file means "not a checkpoint"
        raise CheckpointError(
            f"checkpoint {path} cannot be read: {unreadable_reason(exc)}; expected a file "
            f"written by torch.save holding tensors (an lpft backbone checkpoint)"
        ) from None


def is_lpft_checkpoint(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load an lpft checkpoint; a file of another kind is refused with its name."""
    payload = load_payload(path)
    if not is_lpft_checkpoint(payload):
        raise CheckpointError(
            f"checkpoint {path} is not an lpft backbone checkpoint "
            f"(expected a dict with format '{CHECKPOINT_FORMAT}', arch, arch_kwargs, state_dict)"
        )
    return payload


def unreadable_reason(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in lpft's words: PyTorch's own message may
    advise loading with ``weights_only=False``, which would run code from an untrusted file."""
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return (
            "it holds Python objects other than tensors and plain containers, "
            "which lpft never loads"
        )
    if isinstance(exc, zipfile.BadZipFile | EOFError):
        return "the file is truncated or not a torch.save archive"
    return f"not a torch.save file ({type(exc).__name__})"


def load_state_dict_strictly(module: nn.Module, state_dict: dict[str, Any], source: str) -> None:
    """Load weights, failing with the first missing/unexpected/mis-shaped keys named."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_first(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch {_first(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))
    module.load_state_dict(state_dict)


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return f"[{shown}]{more}"
