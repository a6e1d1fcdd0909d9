"""``torchvision:`` specs: random weights, the weights enum's input pipeline, offline errors."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from lpft.errors import CheckpointError, ConfigError
from lpft.models import create_backbone, parse_model_spec
from lpft.models.adapters import parameters_under
from lpft.models.sources.torchvision import chosen_weights, embedding_modules, input_spec_of
from model_checks import assert_round_trips_through_a_file, features_of, images_for, pooled_blocks

SPEC = "torchvision:resnet18?weights=random"


@pytest.fixture(scope="module")
def resnet18():
    return create_backbone(SPEC)


def test_resnet_features_blocks_and_input_spec(resnet18) -> None:
    images = images_for(resnet18, size=64)
    assert features_of(resnet18, images).shape == (2, 512) and resnet18.feature_dim == 512
    blocks = pooled_blocks(resnet18, images)
    assert list(blocks) == ["layer1", "layer2", "layer3", "layer4"]
    assert [b.shape[1] for b in blocks.values()] == [64, 128, 256, 512]
    spec = resnet18.input_spec
    assert (spec.size, spec.channels, spec.interpolation) == (224, 3, "bilinear")
    assert spec.crop_pct == pytest.approx(224 / 256)
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))


def test_weights_option_picks_the_enum_and_its_input_pipeline() -> None:
    enum = torchvision.models.ResNet50_Weights
    assert chosen_weights(parse_model_spec("torchvision:resnet50")) is enum.IMAGENET1K_V2
    v1 = chosen_weights(parse_model_spec("torchvision:resnet50?weights=IMAGENET1K_V1"))
    assert v1 is enum.IMAGENET1K_V1
    assert input_spec_of(enum.IMAGENET1K_V2).crop_pct == pytest.approx(224 / 232)
    assert input_spec_of(v1).crop_pct == pytest.approx(224 / 256)
    swag = input_spec_of(torchvision.models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1)
    assert (swag.size, swag.interpolation, swag.crop_pct) == (384, "bicubic", 1.0)


def test_random_weights_are_seeded(resnet18) -> None:
    again = create_backbone(SPEC)
    images = images_for(resnet18, size=64)
    assert torch.equal(features_of(again, images), features_of(resnet18, images))


def test_saved_then_loaded_file_reproduces_features(resnet18, tmp_path: Path) -> None:
    assert_round_trips_through_a_file(resnet18, SPEC, tmp_path, size=64)


def test_unreachable_download_names_the_file_and_cache_dir(monkeypatch, tmp_path) -> None:
    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(CheckpointError) as error:
        create_backbone("torchvision:resnet18")
    message = str(error.value)
    assert "\n" not in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert f"{tmp_path}/hub/checkpoints/resnet18-f37072fd.pth" in message
    assert "torchvision:resnet18?weights=random" in message


def test_bad_architecture_and_weights_are_named() -> None:
    with pytest.raises(ConfigError, match="did you mean resnet50"):
        create_backbone("torchvision:resnet5O")
    with pytest.raises(ConfigError, match="weights must be random or one of IMAGENET1K_V1"):
        create_backbone("torchvision:resnet18?weights=IMAGENET1K_V9")


def test_stem_of_each_family_by_its_class() -> None:
    models = torchvision.models
    vit = models.VisionTransformer(32, 8, num_layers=1, num_heads=1, hidden_dim=8, mlp_dim=8)
    convnext = models.convnext.ConvNeXt(
        [models.convnext.CNBlockConfig(8, 16, 1), models.convnext.CNBlockConfig(16, None, 1)]
    )
    swin = models.SwinTransformer([4, 4], 8, [1, 1], [1, 1], [2, 2])
    assert parameters_under(vit, embedding_modules(vit)) == [
        "class_token",
        "conv_proj.weight",
        "conv_proj.bias",
        "encoder.pos_embedding",
    ]
    stem = ["features.0.0.weight", "features.0.0.bias", "features.0.1.weight", "features.0.1.bias"]
    assert parameters_under(convnext, embedding_modules(convnext)) == stem
    assert parameters_under(swin, embedding_modules(swin)) == [
        "features.0.0.weight",
        "features.0.0.bias",
        "features.0.2.weight",
        "features.0.2.bias",
    ]
    assert embedding_modules(models.resnet18()) == ["conv1", "bn1"]


def test_unreachable_host_fails_before_any_download(offline, monkeypatch, tmp_path) -> None:
    def download(*_args, **_kwargs):
        raise AssertionError("no download is attempted when the host cannot be reached")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", download)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match=r"download\.pytorch\.org cannot be reached"):
        create_backbone("torchvision:resnet18")
