"""Backbone specs, checkpoints and the cards of the shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lpft.cli.main import main
from lpft.errors import CheckpointError, ConfigError
from lpft.models import create_backbone, save_backbone_checkpoint, shipped_checkpoint_path
from lpft.models.checkpoint import sha256_of
from lpft.models.glyph_resnet import GlyphResNet

SHIPPED = ("glyph-resnet", "glyph-resnet-letters")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_matches_its_checkpoint(name: str) -> None:
    path = shipped_checkpoint_path(name)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == sha256_of(path)
    backbone = create_backbone(f"builtin:{name}")
    assert sum(p.numel() for p in backbone.parameters()) == card["parameters"]
    assert backbone.feature_dim == card["feature_dim"]
    assert path.stat().st_size < 5 * 2**20


def test_file_spec_round_trips_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    original = GlyphResNet(widths=(8, 16, 16), blocks_per_stage=1)
    path = tmp_path / "net.pt"
    kwargs = {"widths": [8, 16, 16], "blocks_per_stage": 1, "input_size": 8}
    save_backbone_checkpoint(path, "glyph-resnet", kwargs, original)
    loaded = create_backbone(f"file:{path}")
    for key, value in original.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_checkpoint_with_wrong_keys_lists_them(tmp_path: Path) -> None:
    net = GlyphResNet(widths=(8, 16, 16), blocks_per_stage=1)
    path = tmp_path / "net.pt"
    save_backbone_checkpoint(path, "glyph-resnet", {"widths": [8, 16, 32]}, net)
    with pytest.raises(CheckpointError, match=r"does not fit the model: .*missing keys \[.*\]"):
        create_backbone(f"file:{path}")


def test_checkpoint_with_wrong_shapes_lists_them(tmp_path: Path) -> None:
    net = GlyphResNet(widths=(8, 16, 16), blocks_per_stage=1)
    path = tmp_path / "net.pt"
    kwargs = {"widths": [8, 16, 32], "blocks_per_stage": 1}
    save_backbone_checkpoint(path, "glyph-resnet", kwargs, net)
    with pytest.raises(CheckpointError, match=r"shape mismatch \[stages"):
        create_backbone(f"file:{path}")


def test_foreign_or_corrupt_checkpoint_files_are_named(tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match=r"plain\.pt is not an lpft backbone checkpoint"):
        create_backbone(f"file:{plain}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt cannot be read"):
        create_backbone(f"file:{junk}")
    with pytest.raises(CheckpointError, match="does not exist"):
        create_backbone(f"file:{tmp_path / 'missing.pt'}")


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("glyph-resnet", ConfigError, "must look like SOURCE:NAME"),
        ("hub:glyph-resnet", ConfigError, "unknown backbone source 'hub'"),
        ("builtin:glyph-resnett", ConfigError, "did you mean glyph-resnet"),
    ],
)
def test_bad_specs_are_explained(spec: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        create_backbone(spec)


class NotWeights:
    """A class a checkpoint may not contain: loading it would run code from the file."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


@pytest.mark.parametrize("kind", ["text", "pickled-object", "truncated"])
def test_a_file_that_is_not_a_checkpoint_is_one_line_exit_2(
    tmp_path: Path, capsys, kind: str
) -> None:
    path = tmp_path / "weights.pt"
    if kind == "text":
        path.write_text("these are not weights\n" * 20)
    elif kind == "pickled-object":
        torch.save({"model": NotWeights()}, path)
    else:
        save_backbone_checkpoint(path, "glyph_resnet", {}, GlyphResNet())
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError) as error:
        create_backbone(f"file:{path}")
    message = str(error.value)
    assert str(path) in message and "expected a file written by torch.save" in message
    assert "weights_only" not in message and "\n" not in message

    assert main(["run", "--model", f"file:{path}", "--quiet", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lpft: error: checkpoint ") and "\n" not in err
    assert "weights_only" not in err
