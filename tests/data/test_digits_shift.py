"""The embedded benchmark: deterministic generation and a clean handwritten split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lpft.data.digits_shift import DigitsShiftOptions, handwritten_splits, printed_digits
from lpft.data.glyphs import render_set
from lpft.pretrain import RECIPES
from lpft.pretrain.train import pretraining_arrays

SMALL = {"train_per_class": 3, "val_per_class": 2, "test_per_class": 2, "heldout_per_class": 2}


def test_generation_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    options = DigitsShiftOptions(**SMALL)
    first = printed_digits(options, tmp_path / "a")
    second = printed_digits(options, tmp_path / "b")
    for split in first:
        assert first[split].images.tobytes() == second[split].images.tobytes()
        assert first[split].labels.tobytes() == second[split].labels.tobytes()
    files_a = sorted((tmp_path / "a").rglob("*.npy"))
    files_b = sorted((tmp_path / "b").rglob("*.npy"))
    assert [f.read_bytes() for f in files_a] == [f.read_bytes() for f in files_b]


def test_other_seed_gives_other_glyphs(tmp_path: Path) -> None:
    first = printed_digits(DigitsShiftOptions(**SMALL), tmp_path)
    other = printed_digits(DigitsShiftOptions(**SMALL, seed=1), tmp_path)
    assert first["id_train"].images.tobytes() != other["id_train"].images.tobytes()


def test_cache_is_reused(tmp_path: Path) -> None:
    options = DigitsShiftOptions(**SMALL)
    printed_digits(options, tmp_path)
    meta = next(tmp_path.rglob("meta.json"))
    stamp = meta.stat().st_mtime_ns
    printed_digits(options, tmp_path)
    assert meta.stat().st_mtime_ns == stamp


def test_rendered_glyphs_are_in_the_uci_format() -> None:
    images, labels = render_set("0123456789", ["DejaVuSans.ttf"], 2, seed=(0, 1))
    assert images.shape == (20, 8, 8) and images.dtype == np.uint8
    assert images.max() <= 16 and images.sum() > 0
    assert list(labels[:2]) == [0, 0]


def test_handwritten_parts_are_disjoint_and_cover_the_dataset() -> None:
    parts = handwritten_splits()
    indices = {name: set(part.source_indices.tolist()) for name, part in parts.items()}
    assert sum(len(i) for i in indices.values()) == 1797
    assert not indices["pretrain"] & indices["ood_test"]
    assert not indices["pretrain"] & indices["ood_val"]
    assert not indices["ood_val"] & indices["ood_test"]


def test_pretraining_pool_is_exactly_the_pretrain_part() -> None:
    recipe = RECIPES.get("glyph-resnet").with_changes(letters_per_class=1)
    images, labels, names, counts = pretraining_arrays(recipe)
    pool = handwritten_splits()["pretrain"]
    handwritten = labels >= len(names) - 10
    assert counts["handwritten_pool"] == len(pool.labels)
    assert sorted(map(bytes, images[handwritten])) == sorted(
        map(bytes, np.concatenate([pool.images] * recipe.handwritten_repeats))
    )


def test_letters_only_recipe_has_no_handwriting() -> None:
    recipe = RECIPES.get("glyph-resnet-letters").with_changes(letters_per_class=1)
    _, labels, names, counts = pretraining_arrays(recipe)
    assert counts["handwritten_pool"] == 0 and len(names) == 52 and labels.max() == 51
