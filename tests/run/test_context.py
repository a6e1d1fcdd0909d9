"""How a run serves its splits: stored once, or streamed by loader workers when a split is too
large to store; both paths must train the same model, to the last bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress

from lpft.config import resolve_config
from lpft.data import BuildContext, create_benchmark, lpft_home
from lpft.models import create_backbone
from lpft.run import context
from lpft.run.runner import Runner
from tests_support import tiny_run_config

CPU = torch.device("cpu")
FT = {"ft": {"lrs": [0.03], "epochs": 2, "batch_size": 4}}


def photos_of_many_sizes(root: Path) -> Path:
    """A ``folder`` data root of RGB photos from 10 to 40 pixels a side, two classes."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 6), ("test", 6), ("ood/dusk", 6)):
        for index in range(count):
            label = index % 2
            height, width = rng.integers(10, 40, 2)
            pixels = rng.normal(90 + 80 * label, 30, (height, width, 3))
            path = root / split / f"c{label}" / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return root


def augmented_ft(out: Path, root: Path, num_workers: int, store_max_mb: int = 1024) -> dict:
    overrides = tiny_run_config(
        out,
        FT,
        benchmark="folder",
        data_root=str(root),
        benchmark_options={"augment": "rrc_flip"},
        num_workers=num_workers,
        store_max_mb=store_max_mb,
        feature_cache=False,
    )
    Runner(resolve_config(overrides=overrides), quiet=True).run()
    return json.loads((out / "results.json").read_text())["methods"]["ft"]["seeds"][0]["selected"]


def test_a_split_too_large_to_store_trains_as_a_stored_one(tmp_path: Path, monkeypatch) -> None:
    root = photos_of_many_sizes(tmp_path / "photos")
    stores = []
    store_images = context.store_images
    monkeypatch.setattr(
        context,
        "store_images",
        lambda *args, **kwargs: stores.append(1) or store_images(*args, **kwargs),
    )
    stored = augmented_ft(tmp_path / "stored", root, num_workers=0)
    assert stores, "the small splits are stored"

    stores.clear()
    streamed = augmented_ft(tmp_path / "streamed", root, num_workers=1, store_max_mb=0)
    assert not stores, "nothing is stored: every split goes through loader workers"

    assert streamed["history"] == stored["history"]
    assert streamed["ood"] == stored["ood"]
    assert stored["history"][0]["train_loss"] != stored["history"][1]["train_loss"]


def test_a_streamed_run_keeps_one_set_of_workers_per_split_read_every_epoch(
    tiny_overrides: dict,
) -> None:
    overrides = tiny_overrides | {
        "benchmark_options": {"augment": "rrc_flip"},
        "store_max_mb": 0,
        "num_workers": 1,
    }
    config = resolve_config(overrides=overrides)
    benchmark = create_benchmark(
        config.benchmark, config.benchmark_options, BuildContext(None, lpft_home(), False)
    )
    ctx = context.RunContext(
        config, benchmark, create_backbone(config.model), CPU, Progress(disable=True), None
    )
    first, second = ctx.train_dataset(0), ctx.train_dataset(1)
    assert first.loader is second.loader and first.seed != second.seed
    assert first.loader.persistent_workers
    assert ctx.prepared("id_val").loader.persistent_workers
    assert not ctx.prepared("id_test").loader.persistent_workers
