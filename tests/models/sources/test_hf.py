"""``hf:`` specs on tiny Hugging Face models saved by the test with ``save_pretrained``."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from transformers import ViTModel

from lpft.errors import CheckpointError
from lpft.models import create_backbone
from model_checks import (
    assert_round_trips_through_a_file,
    failure_alone,
    features_of,
    images_for,
    pooled_blocks,
    save_tiny_hf_vit,
)


@pytest.fixture(scope="module")
def saved_vit(tmp_path_factory) -> tuple[Path, ViTModel]:
    directory = tmp_path_factory.mktemp("hf") / "tiny-vit"
    return directory, save_tiny_hf_vit(directory)


def test_local_directory_loads_features_blocks_and_processor(saved_vit) -> None:
    directory, model = saved_vit
    backbone = create_backbone(f"hf:{directory}")
    images = images_for(backbone)
    with torch.no_grad():
        expected = model(pixel_values=images).pooler_output
    assert torch.equal(features_of(backbone, images), expected)
    assert backbone.feature_dim == 32
    blocks = pooled_blocks(backbone, images)
    assert list(blocks) == ["layers.0", "layers.1"]
    assert all(b.shape == (2, 32) for b in blocks.values())
    spec = backbone.input_spec
    assert (spec.size, spec.interpolation, spec.mean) == (32, "bicubic", (0.4, 0.4, 0.4))
    assert spec.crop_pct == pytest.approx(32 / 36)


def test_random_weights_from_the_config_alone(saved_vit, tmp_path: Path) -> None:
    directory, model = saved_vit
    spec = f"hf:{directory}?weights=random"
    backbone = create_backbone(spec)
    images = images_for(backbone)
    with torch.no_grad():
        assert not torch.equal(
            features_of(backbone, images), model(pixel_values=images).pooler_output
        )
    assert torch.equal(features_of(create_backbone(spec), images), features_of(backbone, images))
    assert_round_trips_through_a_file(backbone, spec, tmp_path)


def test_missing_weights_name_where_to_put_them(saved_vit, tmp_path: Path) -> None:
    directory, _ = saved_vit
    copy = tmp_path / "no-weights"
    copy.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (copy / name).write_bytes((directory / name).read_bytes())
    with pytest.raises(CheckpointError, match=rf"place them at the directory {copy}"):
        create_backbone(f"hf:{copy}")


def test_random_weights_without_a_local_config_fail_at_once(offline, caplog, capfd) -> None:
    message = failure_alone(
        lambda: create_backbone("hf:lpft-tests/not-cached-vit?weights=random"),
        CheckpointError,
        caplog,
        capfd,
    )
    assert "read only from local files" in message


def test_random_weights_from_the_hub_cache_offline(
    saved_vit, tmp_path, monkeypatch, offline
) -> None:
    """A repo in the Hugging Face cache layout (as a download leaves it) serves its config and
    image processor without the network."""
    directory, _ = saved_vit
    commit = "0" * 40
    snapshot = tmp_path / "hub" / "models--lpft-tests--tiny-vit" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json"):
        (snapshot / name).write_bytes((directory / name).read_bytes())
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    backbone = create_backbone("hf:lpft-tests/tiny-vit?weights=random")
    assert backbone.feature_dim == 32 and backbone.input_spec.size == 32
