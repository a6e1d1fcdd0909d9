"""``file:<path>[?arch=<spec>]``: backbone weights from a file.

Without ``arch`` the file is an lpft checkpoint (``lpft pretrain``, ``save_backbone_checkpoint``,
``save_spec_checkpoint``), which names its own architecture. With ``arch`` it is a checkpoint made
elsewhere, loaded into that spec built with random weights:

- MoCo v2 / MoCo-TP ``.pth.tar``: the query encoder (``module.encoder_q.``) is kept, the key
  encoder and queue are ignored, the projection head ``fc`` is dropped
  (``file:moco_v2_800ep.pth.tar?arch=torchvision:resnet50``);
- CLIP state dicts (OpenAI archives, open_clip training checkpoints, ``.safetensors``) into an
  open_clip model (``file:clip.pt?arch=openclip:ViT-B-16``);
- plain or ``DataParallel`` state dicts of any spec.

Loading is strict: any mismatch names the first missing, unexpected or mis-shaped keys.

``?weights=random`` builds the architecture the file names (its own, or ``arch``) with random
weights, as ``<spec>?weights=random`` does: the from-scratch baseline of a checkpoint's network.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from lpft.errors import CheckpointError, ConfigError
from lpft.models.adapters import first_line, require_extra
from lpft.models.backbone import Backbone, register_backbone_source
from lpft.models.checkpoint import (
    CHECKPOINT_FORMAT,
    is_lpft_checkpoint,
    load_payload,
    load_state_dict_strictly,
)
from lpft.models.spec import ARCHITECTURES, create_backbone, random_variant
from lpft.registry import PRETRAINED_WEIGHTS, RANDOM_WEIGHTS, ModelSpec

# Wrappers around the encoder's keys, tried in order: MoCo v1/v2 (and MoCo-TP) query encoder,
# MoCo v3 base encoder, then (Distributed)DataParallel.
ENCODER_PREFIXES = ("module.encoder_q.", "encoder_q.", "module.base_encoder.", "module.")
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")


def build_architecture(arch: str, arch_kwargs: dict[str, Any]) -> Backbone:
    """An lpft architecture (``ARCHITECTURES``) from its constructor arguments."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in arch_kwargs.items()}
    return ARCHITECTURES.get(arch)(**kwargs)


def lpft_architecture(path: Path, payload: dict[str, Any]) -> Backbone:
    """The network an lpft checkpoint names, with random weights."""
    if "spec" in payload:
        return create_backbone(random_variant(payload["spec"]))
    try:
        return build_architecture(payload["arch"], payload.get("arch_kwargs", {}))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: bad arch or arch_kwargs ({exc})") from None


def load_lpft_checkpoint(path: Path, payload: dict[str, Any]) -> Backbone:
    backbone = lpft_architecture(path, payload)
    target = backbone.weights_module() if "spec" in payload else backbone
    load_state_dict_strictly(target, payload["state_dict"], f"checkpoint {path}")
    return backbone


def read_foreign(path: Path) -> Any:
    """A checkpoint made outside lpft: safetensors, a pickle-free torch file, or a TorchScript
    archive (OpenAI's CLIP files), whose state dict is taken."""
    if path.suffix == ".safetensors":
        return require_extra("safetensors.torch", "hf").load_file(str(path))
    try:
        return load_payload(path)
    except CheckpointError as error:
        try:
            with warnings.catch_warnings():
                # torch's deprecation notice of TorchScript, not a fact about this file
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu").state_dict()
        except (RuntimeError, ValueError):
            raise error from None


def encoder_state_dict(payload: Any, path: Path) -> dict[str, torch.Tensor]:
    state = payload
    for key in STATE_DICT_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path}: no state dict of tensors found")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for prefix in ENCODER_PREFIXES:
        if any(key.startswith(prefix) for key in state):
            return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_foreign_checkpoint(path: Path, arch: str) -> Backbone:
    backbone = create_backbone(random_variant(arch))
    state = backbone.adapt_state_dict(encoder_state_dict(read_foreign(path), path))
    load_state_dict_strictly(backbone.weights_module(), state, f"checkpoint {path}")
    return backbone


def load_backbone_file(
    path: Path, arch: str | None = None, random_weights: bool = False
) -> Backbone:
    """A backbone from an lpft checkpoint, or from a foreign one loaded into ``arch``; with
    ``random_weights`` the same network with random weights (the file must exist)."""
    path = Path(path).expanduser()
    if arch is not None and random_weights:
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path}: no such file")
        return create_backbone(random_variant(arch))
    if arch is not None:
        return load_foreign_checkpoint(path, arch)
    payload = load_payload(path)
    if not is_lpft_checkpoint(payload):
        raise CheckpointError(
            f"checkpoint {path} is not an lpft backbone checkpoint (format '{CHECKPOINT_FORMAT}'); "
            f"for weights saved elsewhere (MoCo, CLIP, a state dict) name the architecture: "
            f"file:{path}?arch=torchvision:resnet50"
        )
    if random_weights:
        return lpft_architecture(path, payload)
    return load_lpft_checkpoint(path, payload)


def catalogue(pattern: str | None) -> list[str]:
    return [
        "file:<path>                      an lpft checkpoint (lpft pretrain, save_spec_checkpoint)",
        "file:<path>?arch=<spec>          weights saved elsewhere, loaded into <spec>, e.g. "
        "file:moco_v2_800ep_pretrain.pth.tar?arch=torchvision:resnet50",
        "file:<path>?weights=random       the network the file names, random weights",
    ]


def check_spec(spec: ModelSpec) -> None:
    if spec.weights not in (PRETRAINED_WEIGHTS, RANDOM_WEIGHTS):
        raise ConfigError(f"model spec '{spec}': weights must be random or pretrained")
    if "arch" in spec.options:
        random_variant(spec.options["arch"])


@register_backbone_source(
    "file",
    catalogue=catalogue,
    summary="weights from a file: lpft checkpoints, MoCo / MoCo-TP, CLIP, state dicts",
    options=("arch", "weights"),
    check=check_spec,
)
def build_file(spec: ModelSpec) -> Backbone:
    try:
        return load_backbone_file(Path(spec.name), spec.options.get("arch"), spec.random_weights)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {spec.name}: {first_line(exc)}") from None
