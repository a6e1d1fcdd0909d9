"""``file:PATH?arch=SPEC``: checkpoints made outside lpft, such as the paper's MoCo-v2 ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from lpft.errors import CheckpointError
from lpft.models import create_backbone, save_spec_checkpoint
from model_checks import failure_alone, features_of, images_for


def moco_v2_checkpoint(path: Path, encoder: torch.nn.Module) -> None:
    """The layout of MoCo-v2's ``.pth.tar``: query and key encoders (with the MLP projection
    head ``fc``) under ``module.``, the queue, and the optimizer state."""
    state = {}
    for name in ("encoder_q", "encoder_k"):
        state.update({f"module.{name}.{k}": v for k, v in encoder.state_dict().items()})
    state["module.queue"] = torch.randn(128, 16)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": {}}, path)


@pytest.fixture(scope="module")
def moco_encoder() -> torch.nn.Module:
    torch.manual_seed(7)
    encoder = torchvision.models.resnet50()
    encoder.fc = torch.nn.Sequential(
        torch.nn.Linear(2048, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 128)
    )
    return encoder.eval()


def test_moco_query_encoder_loads_into_a_resnet50(moco_encoder, tmp_path: Path) -> None:
    path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    moco_v2_checkpoint(path, moco_encoder)
    backbone = create_backbone(f"file:{path}?arch=torchvision:resnet50")
    assert backbone.feature_dim == 2048
    images = images_for(backbone, size=64)
    reference = torch.nn.Sequential(*list(moco_encoder.children())[:-1], torch.nn.Flatten())
    with torch.no_grad():
        expected = reference(images)
    assert torch.allclose(features_of(backbone, images), expected, atol=1e-5)


def test_mismatched_checkpoint_names_the_first_differing_keys(moco_encoder, tmp_path: Path) -> None:
    path = tmp_path / "moco.pth.tar"
    moco_v2_checkpoint(path, moco_encoder)
    with pytest.raises(CheckpointError) as error:
        create_backbone(f"file:{path}?arch=torchvision:resnet18")
    message = str(error.value)
    assert "moco.pth.tar does not fit the model" in message
    assert "unexpected keys [layer1.0.conv3.weight" in message
    assert "shape mismatch [layer1.0.conv1.weight (64, 64, 1, 1) vs (64, 64, 3, 3)" in message


def test_plain_state_dict_without_arch_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=r"name the architecture: file:.*\?arch="):
        create_backbone(f"file:{path}")


def test_random_weights_build_the_network_the_file_names(tmp_path: Path) -> None:
    spec = "torchvision:resnet18?weights=random"
    random = create_backbone(spec)
    trained = create_backbone(spec)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(1.0)
    path = tmp_path / "trained.pt"
    save_spec_checkpoint(path, spec, trained)
    torch.save(trained.net.state_dict(), tmp_path / "state.pth")
    images = images_for(random, size=32)
    expected = features_of(random, images)
    state = f"file:{tmp_path}/state.pth?arch=torchvision:resnet18&weights=random"
    for built in (f"file:{path}?weights=random", state):
        assert torch.equal(features_of(create_backbone(built), images), expected)
    assert not torch.equal(features_of(create_backbone(f"file:{path}"), images), expected)


def test_unreadable_file_is_one_line_without_torchs_warnings(
    tmp_path: Path, caplog, capfd
) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    message = failure_alone(
        lambda: create_backbone(f"file:{path}?arch=torchvision:resnet18"),
        CheckpointError,
        caplog,
        capfd,
    )
    assert "notes.pt cannot be read" in message
