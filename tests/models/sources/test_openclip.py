"""``openclip:`` specs on a tiny CLIP architecture registered by the test, random weights."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from lpft.errors import CheckpointError, ConfigError
from lpft.models import create_backbone
from model_checks import (
    TINY_CLIP_ARCH,
    assert_round_trips_through_a_file,
    failure_alone,
    features_of,
    images_for,
    pooled_blocks,
    register_tiny_clip,
)

ARCH = TINY_CLIP_ARCH
SPEC = f"openclip:{ARCH}?weights=random"
CLASSES = ["golden_retriever", "tabby cat", "owl"]


@pytest.fixture(scope="module")
def clip_backbone(tmp_path_factory):
    register_tiny_clip(tmp_path_factory.mktemp("clip"))
    return create_backbone(SPEC)


def test_image_tower_features_blocks_and_preprocess(clip_backbone) -> None:
    images = images_for(clip_backbone)
    features = features_of(clip_backbone, images)
    assert features.shape == (2, 16) and clip_backbone.feature_dim == 16
    with torch.no_grad():
        assert torch.equal(features, clip_backbone.clip.value.encode_image(images))
    blocks = pooled_blocks(clip_backbone, images)
    assert list(blocks) == ["transformer.resblocks.0", "transformer.resblocks.1"]
    spec = clip_backbone.input_spec
    assert (spec.size, spec.interpolation, spec.crop_pct) == (32, "bicubic", 1.0)
    assert spec.mean == pytest.approx((0.4815, 0.4578, 0.4082), abs=1e-4)


def expected_zeroshot(clip, class_names: list[str]) -> torch.Tensor:
    tokenizer = open_clip.get_tokenizer(ARCH)
    rows = []
    for name in class_names:
        prompts = [t(name.replace("_", " ")) for t in open_clip.SIMPLE_IMAGENET_TEMPLATES]
        with torch.no_grad():
            text = F.normalize(clip.encode_text(tokenizer(prompts)), dim=-1)
        rows.append(F.normalize(text.mean(0), dim=-1))
    return torch.stack(rows)


def test_zeroshot_head_is_the_normalised_prompt_embeddings(clip_backbone) -> None:
    weight, bias = clip_backbone.zeroshot_head(CLASSES)
    assert weight.shape == (3, 16) and torch.equal(bias, torch.zeros(3))
    assert torch.allclose(weight, expected_zeroshot(clip_backbone.clip.value, CLASSES), atol=1e-6)
    assert torch.allclose(weight.norm(dim=1), torch.ones(3))
    assert not torch.allclose(weight[0], weight[1])


def test_copies_share_the_text_tower_outside_the_state_dict(clip_backbone) -> None:
    clone = copy.deepcopy(clip_backbone)
    assert clone.clip.value is clip_backbone.clip.value
    assert clone.net is not clip_backbone.net
    assert all(key.startswith("net.") for key in clip_backbone.state_dict())


def test_saved_then_loaded_file_reproduces_features(clip_backbone, tmp_path: Path) -> None:
    assert_round_trips_through_a_file(clip_backbone, SPEC, tmp_path)


def test_clip_state_dict_loads_both_towers(clip_backbone, tmp_path: Path) -> None:
    torch.manual_seed(11)
    trained = open_clip.create_model(ARCH).eval()
    path = tmp_path / "epoch_32.pt"
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}
    torch.save({"epoch": 32, "name": "run", "state_dict": state}, path)
    loaded = create_backbone(f"file:{path}?arch=openclip:{ARCH}")
    images = images_for(loaded)
    with torch.no_grad():
        assert torch.equal(features_of(loaded, images), trained.encode_image(images))
    weight, _ = loaded.zeroshot_head(CLASSES)
    assert torch.allclose(weight, expected_zeroshot(trained, CLASSES), atol=1e-6)


def test_pretrained_spec_needs_a_known_tag(clip_backbone) -> None:
    with pytest.raises(ConfigError, match="names no pretrained tag"):
        create_backbone(f"openclip:{ARCH}")
    with pytest.raises(ConfigError, match="'laion9b' is neither a pretrained tag of ViT-B-16"):
        create_backbone("openclip:ViT-B-16/laion9b")


# A pretrained tag of the tiny architecture, its weights on the Hub, with the preprocessing and
# activation its weights were trained with (as open_clip's own tags record them).
TINY_TAG = {
    "hf_hub": "lpft-tests/tiny-clip/",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.25, 0.25, 0.25),
    "interpolation": "bilinear",
    "quick_gelu": True,
}


@pytest.fixture
def tiny_tag(clip_backbone, monkeypatch) -> str:
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, ARCH, {"tinytag": TINY_TAG})
    return f"openclip:{ARCH}/tinytag"


def test_tagged_random_spec_builds_offline_with_the_tags_preprocessing(
    tiny_tag, offline, caplog, capfd
) -> None:
    backbone = create_backbone(f"{tiny_tag}?weights=random")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    spec = backbone.input_spec
    assert (spec.mean, spec.std, spec.interpolation) == ((0.5,) * 3, (0.25,) * 3, "bilinear")
    activation = backbone.net.transformer.resblocks[0].mlp.gelu
    assert isinstance(activation, open_clip.transformer.QuickGELU)
    assert capfd.readouterr().err == ""


def test_unreachable_tag_weights_fail_at_once_in_one_line(
    tiny_tag, offline, caplog, capfd
) -> None:
    message = failure_alone(lambda: create_backbone(tiny_tag), CheckpointError, caplog, capfd)
    assert "hub repo lpft-tests/tiny-clip/" in message
    assert f"{tiny_tag}?weights=random" in message
