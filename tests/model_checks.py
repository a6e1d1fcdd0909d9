"""Checks every model source's test runs on the backbone it builds."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import open_clip
import pytest
import torch
from transformers import ViTConfig, ViTImageProcessor, ViTModel

from lpft.models import Backbone, create_backbone, save_spec_checkpoint
from lpft.training.features import capture_blocks


def images_for(backbone: Backbone, size: int | None = None, count: int = 2) -> torch.Tensor:
    """Random inputs at the backbone's size (or ``size``: convolutional nets take any)."""
    spec = backbone.input_spec
    side = size or spec.size
    generator = torch.Generator().manual_seed(0)
    return torch.randn(count, spec.channels, side, side, generator=generator)


@torch.no_grad()
def features_of(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    return backbone.eval()(images)


@torch.no_grad()
def pooled_blocks(backbone: Backbone, images: torch.Tensor) -> dict[str, torch.Tensor]:
    sink: dict[str, list[torch.Tensor]] = {}
    with capture_blocks(backbone.eval(), sink):
        backbone(images)
    return {name: outputs[0] for name, outputs in sink.items()}


def assert_round_trips_through_a_file(
    backbone: Backbone, spec: str, tmp_path: Path, size: int | None = None
) -> None:
    """A saved-then-loaded ``file:`` checkpoint gives exactly the same features."""
    images = images_for(backbone, size)
    path = tmp_path / "backbone.pt"
    save_spec_checkpoint(path, spec, backbone)
    loaded = create_backbone(f"file:{path}")
    assert type(loaded) is type(backbone)
    assert torch.equal(features_of(loaded, images), features_of(backbone, images))


TINY_CLIP_ARCH = "lpft-tiny-clip"
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def register_tiny_clip(directory: Path) -> str:
    """Register a CLIP architecture small enough for tests with open_clip; returns its name."""

    config = directory / f"{TINY_CLIP_ARCH}.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    return TINY_CLIP_ARCH


def save_tiny_hf_vit(directory: Path) -> ViTModel:
    """A tiny Hugging Face ViT (32 px, 2 layers) and its image processor, ``save_pretrained``
    into ``directory``; returns the model (seeded weights)."""
    torch.manual_seed(5)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    model = ViTModel(config).eval()
    model.save_pretrained(directory)
    processor = ViTImageProcessor(
        size={"shortest_edge": 36},
        crop_size={"height": 32, "width": 32},
        do_center_crop=True,
        resample=3,
        image_mean=[0.4, 0.4, 0.4],
        image_std=[0.2, 0.2, 0.2],
    )
    processor.save_pretrained(directory)
    return model


def failure_alone(call: Callable[[], object], error: type[Exception], caplog, capfd) -> str:
    """``call()`` raises ``error`` in one line with nothing ahead of it: no warning, no log
    record of a library, nothing on stderr. Returns the message."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(error) as raised:
            call()
    message = str(raised.value)
    assert "\n" not in message
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert capfd.readouterr().err == ""
    return message
