"""``timm:`` specs on timm's own tiny test models, with random weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lpft.errors import CheckpointError, ConfigError
from lpft.models import create_backbone
from model_checks import (
    assert_round_trips_through_a_file,
    failure_alone,
    features_of,
    images_for,
    pooled_blocks,
)

SPEC = "timm:test_vit?weights=random"


@pytest.fixture(scope="module")
def vit():
    return create_backbone(SPEC)


def test_vit_features_blocks_and_timm_data_config(vit) -> None:
    images = images_for(vit)
    assert features_of(vit, images).shape == (2, vit.feature_dim) and vit.feature_dim == 64
    blocks = pooled_blocks(vit, images)
    assert list(blocks)[:2] == ["blocks.0", "blocks.1"] and len(blocks) == 6
    spec = vit.input_spec
    assert (spec.size, spec.interpolation, spec.crop_pct) == (160, "bicubic", 0.95)
    assert spec.mean == (0.5, 0.5, 0.5)


def test_resnet_blocks_are_timm_feature_taps() -> None:
    backbone = create_backbone("timm:test_resnet?weights=random")
    assert list(backbone.blocks()) == ["layer1", "layer2", "layer3", "layer4"]
    assert features_of(backbone, images_for(backbone, size=32)).shape[1] == backbone.feature_dim


def test_saved_then_loaded_file_reproduces_features(vit, tmp_path: Path) -> None:
    assert_round_trips_through_a_file(vit, SPEC, tmp_path)


def test_unknown_model_and_missing_extra_are_one_line(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="timm has no model 'test_vitt'"):
        create_backbone("timm:test_vitt?weights=random")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ConfigError, match=r"pip install 'lpft\[timm\]'"):
        create_backbone(SPEC)


def test_unreachable_hub_weights_fail_at_once_in_one_line(offline, caplog, capfd) -> None:
    message = failure_alone(
        lambda: create_backbone("timm:test_vit"), CheckpointError, caplog, capfd
    )
    assert "hub repo timm/test_vit" in message and "timm:test_vit?weights=random" in message
