"""``hf:<repo-or-directory>[?weights=random]``: vision models through transformers' Auto classes
(extra ``lpft[hf]``).

``AutoModel`` builds the network and ``AutoImageProcessor`` gives the input pipeline (mean/std,
resample filter, resize and crop sizes). Features are the model's pooled output (``pooler_output``;
``get_image_features`` for CLIP-like dual encoders), else the first token of the last hidden state
(transformers) or its spatial mean (convolutional models). A local directory written by
``save_pretrained`` works offline; ``weights=random`` needs only its ``config.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lpft.errors import CheckpointError, ConfigError, LpftError
from lpft.models.adapters import (
    LibraryBackbone,
    first_line,
    hub_offline_unless_reachable,
    quiet_library,
    require_extra,
    stage_names,
    weights_unavailable,
)
from lpft.models.backbone import InputSpec, register_backbone_source
from lpft.registry import PRETRAINED_WEIGHTS, RANDOM_WEIGHTS, ModelSpec

EXTRA = "hf"
# PIL resampling codes used by image processors -> torchvision interpolation names.
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
PROCESSOR_FILE = "preprocessor_config.json"
# What transformers' vision models call their stem, tried in order.
EMBEDDING_MODULES = ("embeddings", "embedder")


def _transformers():
    return require_extra("transformers", EXTRA)


def check_spec(spec: ModelSpec) -> None:
    if spec.weights not in (PRETRAINED_WEIGHTS, RANDOM_WEIGHTS):
        raise ConfigError(f"model spec '{spec}': weights must be random or pretrained")


def pooled_features(net: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    if hasattr(net, "get_image_features"):
        output = net.get_image_features(pixel_values=pixels)
        return output if isinstance(output, torch.Tensor) else output.pooler_output
    output = net(pixel_values=pixels)
    pooled = getattr(output, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1)
    hidden = output.last_hidden_state
    return hidden[:, 0] if hidden.dim() == 3 else hidden.mean(dim=(2, 3))


def input_spec_of(processor: Any) -> InputSpec:
    """Size and crop fraction from the processor's ``size`` / ``crop_size``; an exact
    height x width resize becomes a short-side resize to that size plus centre crop."""
    config = processor.to_dict()
    size = config.get("size") or {}
    crop = config.get("crop_size") or {}
    short_side = size.get("shortest_edge") or size.get("height")
    if short_side is None:
        raise ConfigError(f"image processor {type(processor).__name__}: no input size in {size}")
    crop_side = crop.get("height") if config.get("do_center_crop") and crop else short_side
    return InputSpec(
        size=int(crop_side),
        channels=3,
        mean=tuple(config.get("image_mean") or (0.5, 0.5, 0.5)),
        std=tuple(config.get("image_std") or (0.5, 0.5, 0.5)),
        interpolation=RESAMPLE.get(int(config.get("resample", 3)), "bicubic"),
        crop_pct=min(1.0, int(crop_side) / int(short_side)),
    )


def hub_place(name: str) -> str:
    if Path(name).expanduser().is_dir():
        return f"the directory {name} (config.json, weights, preprocessor_config.json)"
    hub = require_extra("huggingface_hub.constants", EXTRA)
    return (
        f"{hub.HF_HUB_CACHE} (the Hugging Face cache, HF_HOME) or a local directory given as "
        "hf:/path/to/dir"
    )


def unavailable(spec: ModelSpec, exc: BaseException) -> LpftError:
    """The one-line error for files of ``spec`` that could not be read: random weights need
    only local files (the config and the image processor); pretrained ones name where the
    weights go."""
    if spec.random_weights:
        return CheckpointError(
            f"model spec '{spec}': random weights are built from the model's config.json and "
            f"preprocessor_config.json, read only from local files and not found for "
            f"{spec.name} ({first_line(exc)}); put them at {hub_place(spec.name)}"
        )
    return weights_unavailable(spec, spec.name, hub_place(spec.name), exc)


@contextmanager
def hub_call(spec: ModelSpec) -> Iterator[None]:
    """A quiet transformers call that fails at once, with one line, when its files are missing
    (``random`` weights never go to the network)."""
    try:
        with quiet_library(), hub_offline_unless_reachable(not spec.random_weights):
            yield
    except (OSError, ValueError) as exc:
        raise unavailable(spec, exc) from None


def load_network(transformers, spec: ModelSpec) -> nn.Module:
    with hub_call(spec):
        if spec.random_weights:
            config = transformers.AutoConfig.from_pretrained(spec.name, local_files_only=True)
            return transformers.AutoModel.from_config(config)
        return transformers.AutoModel.from_pretrained(spec.name)


def load_processor(transformers, spec: ModelSpec) -> Any:
    if Path(spec.name).expanduser().is_dir() and not Path(spec.name, PROCESSOR_FILE).is_file():
        raise ConfigError(
            f"model spec '{spec}': no image processor ({PROCESSOR_FILE}) in {spec.name}"
        )
    with hub_call(spec):
        return transformers.AutoImageProcessor.from_pretrained(
            spec.name, local_files_only=spec.random_weights
        )


def image_tower(net: nn.Module) -> tuple[str, nn.Module]:
    """(prefix, module) of the image tower: ``vision_model`` in dual encoders such as CLIP."""
    if hasattr(net, "vision_model"):
        return "vision_model.", net.vision_model
    return "", net


def hf_block_names(net: nn.Module) -> list[str]:
    """Stages of the image tower."""
    prefix, tower = image_tower(net)
    return [f"{prefix}{name}" for name in stage_names(tower)]


def embedding_modules(net: nn.Module) -> list[str]:
    """The image tower's ``embeddings`` module (patch embedding, class token and position
    embeddings in transformers' vision models; ``embedder`` in its ResNet-style ones)."""
    prefix, tower = image_tower(net)
    for name in EMBEDDING_MODULES:
        if isinstance(getattr(tower, name, None), nn.Module):
            return [f"{prefix}{name}"]
    return []


def catalogue(pattern: str | None) -> list[str]:
    return [
        "hf:<repo>        any image model repo on the Hugging Face hub, e.g. "
        "hf:facebook/dinov2-small or hf:google/vit-base-patch16-224-in21k",
        "hf:<directory>   a directory written by save_pretrained (model and image processor)",
    ]


@register_backbone_source(
    "hf",
    catalogue=catalogue,
    summary="Hugging Face vision models, e.g. hf:facebook/dinov2-small or hf:/path/to/dir",
    check=check_spec,
)
def build_hf(spec: ModelSpec) -> LibraryBackbone:
    transformers = _transformers()
    processor = load_processor(transformers, spec)
    net = load_network(transformers, spec).eval()
    input_spec = input_spec_of(processor)
    with torch.no_grad():
        probe = torch.zeros(1, input_spec.channels, input_spec.size, input_spec.size)
        feature_dim = pooled_features(net, probe).shape[1]
    return LibraryBackbone(
        net,
        feature_dim,
        input_spec,
        hf_block_names(net),
        pooled_features,
        embedding=embedding_modules(net),
    )
