"""A shortened pretraining recipe runs end to end and writes a truthful card."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lpft.cli.main import main
from lpft.models import create_backbone
from lpft.models.checkpoint import sha256_of
from lpft.pretrain import RECIPES
from lpft.pretrain.train import pretrain, random_shift

SMALL_BENCHMARK = {
    "train_per_class": 3,
    "val_per_class": 3,
    "test_per_class": 3,
    "heldout_per_class": 3,
}


def test_short_recipe_end_to_end(tmp_path: Path) -> None:
    recipe = RECIPES.get("glyph-resnet").with_changes(epochs=1, letters_per_class=4)
    card = pretrain(recipe, tmp_path, benchmark_options=SMALL_BENCHMARK)
    checkpoint = tmp_path / "glyph-resnet.pt"
    assert card == json.loads((tmp_path / "glyph-resnet.json").read_text())
    assert card["sha256"] == sha256_of(checkpoint)
    assert card["recipe"]["epochs"] == 1 and card["recipe"]["letters_per_class"] == 4
    assert card["data"]["handwritten_pool"] > 0
    for split in ("id_val", "id_test", "handwritten", "handwritten_val", "fonts-heldout"):
        assert 0.0 <= card["linear_probe"][split] <= 1.0
    backbone = create_backbone(f"file:{checkpoint}")
    assert sum(p.numel() for p in backbone.parameters()) == card["parameters"]


def test_pretrain_cli_rejects_bad_overrides(capsys) -> None:
    assert main(["pretrain", "--epochs", "0"]) == 2
    assert "--epochs=0 must be >= 1" in capsys.readouterr().err
    assert main(["pretrain", "--recipe", "glyph-resnett"]) == 2
    assert "did you mean glyph-resnet" in capsys.readouterr().err


def test_shipped_cards_record_their_recipe() -> None:
    for name in RECIPES.names():
        card_path = Path(__file__).resolve().parents[2] / "src/lpft/models/checkpoints"
        card = json.loads((card_path / f"{name}.json").read_text())
        assert card["recipe"] == RECIPES.get(name).to_json()


def test_random_shift_moves_by_at_most_one_pixel() -> None:
    images = torch.zeros(50, 1, 8, 8)
    images[:, 0, 4, 4] = 1.0
    shifted = random_shift(images, torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(shifted[:, 0] == 1.0, as_tuple=True)[1:]
    assert shifted.shape == images.shape and len(rows) == 50
    assert rows.sub(4).abs().max() <= 1 and cols.sub(4).abs().max() <= 1
    assert len({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}) > 1
