"""A new user's first run: a torchvision model on a folder of ordinary images without val/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from lpft.cli.main import main

CLASSES = ("boat", "car", "plane")


def write_photo(path: Path, hue: int, rng: np.random.Generator) -> None:
    """An RGB image of random size and aspect ratio, saved as JPEG or PNG."""
    height, width = rng.integers(24, 90, size=2)
    pixels = rng.normal(0, 25, (height, width, 3))
    pixels[..., hue] += 150
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def make_photo_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    counts = {"train": 4, "test": 1, "ood/night": 1}
    for split, count in counts.items():
        for hue, name in enumerate(CLASSES):
            for i in range(count):
                suffix = ".jpg" if i % 2 else ".png"
                write_photo(root / split / name / f"{i}{suffix}", hue, rng)
    return root


def test_torchvision_model_runs_on_a_folder_without_val(tmp_path: Path, capsys) -> None:
    root = make_photo_folder(tmp_path / "vehicles")
    out = tmp_path / "run"
    argv = ["run", "--benchmark", "folder", "--data-root", str(root)]
    argv += ["--model", "torchvision:resnet18?weights=random", "--seeds", "1", "--epochs", "1"]
    argv += [
        "--methods",
        "lp,ft,lpft",
        "--lrs",
        "0.001",
        "--set",
        "methods.lp.C=[0.1,1.0]",
        "--device",
        "cpu",
    ]
    argv += ["--no-report", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert "vehicles" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    benchmark = results["benchmark"]
    assert benchmark["name"] == "vehicles"
    assert benchmark["sizes"] == {"id_train": 9, "id_val": 3, "id_test": 3}
    assert benchmark["info"]["val_split"]["fraction"] == 0.2
    assert benchmark["info"]["decoded_in_memory"] == 18
    for method in ("lp", "ft", "lpft"):
        summary = results["methods"][method]["summary"]
        assert 0.0 <= summary["ood"]["night"]["mean"] <= 1.0


def test_freeze_embed_and_surgical_run_on_a_timm_vit(tmp_path: Path, capsys) -> None:
    """The quick sweep of LP, freeze-embed and surgical on a library backbone; a stray file in
    the data is named in the run's warnings."""
    root = make_photo_folder(tmp_path / "vehicles")
    (root / "train" / "car" / "notes.txt").write_text("not an image")
    out = tmp_path / "run"
    argv = ["run", "--benchmark", "folder", "--data-root", str(root), "--quick", "--seeds", "1"]
    argv += ["--model", "timm:test_vit?weights=random", "--methods", "lp,freeze-embed,surgical"]
    argv += ["--device", "cpu", "--no-report", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 files skipped, not in a format Pillow opens (by extension): .txt x1" in printed
    methods = json.loads((out / "results.json").read_text())["methods"]
    assert set(methods) == {"lp", "freeze-embed", "surgical"}
    candidates = methods["surgical"]["seeds"][0]["cells"][0]["candidates"]
    assert [c["hparams"]["block"] for c in candidates] == [f"blocks.{i}" for i in range(6)]
    for method in ("freeze-embed", "surgical"):
        assert 0.0 <= methods[method]["summary"]["ood"]["night"]["mean"] <= 1.0
