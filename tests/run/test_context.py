"""How a run serves its splits: stored once, or streamed by loader workers when a split is too
large to store; both paths must train the same model, to the last bit."""

from __future__ import annotations

import json
from pathlib import Path

from lpft.config import resolve_config
from lpft.run import context
from lpft.run.runner import Runner
from tests_support import tiny_run_config

FT = {"ft": {"lrs": [0.03], "epochs": 2, "batch_size": 8}}


def augmented_ft(out: Path, num_workers: int, store_max_mb: int = 1024) -> dict:
    overrides = tiny_run_config(
        out,
        FT,
        benchmark_options={"augment": "rrc_flip"},
        num_workers=num_workers,
        store_max_mb=store_max_mb,
        feature_cache=False,
    )
    Runner(resolve_config(overrides=overrides), quiet=True).run()
    return json.loads((out / "results.json").read_text())["methods"]["ft"]["seeds"][0]["selected"]


def test_a_split_too_large_to_store_trains_as_a_stored_one(tmp_path: Path, monkeypatch) -> None:
    stores = []
    store_images = context.store_images
    monkeypatch.setattr(
        context, "store_images", lambda *args: stores.append(1) or store_images(*args)
    )
    stored = augmented_ft(tmp_path / "stored", num_workers=0)
    assert stores, "the tiny splits are stored"

    stores.clear()
    streamed = augmented_ft(tmp_path / "streamed", num_workers=1, store_max_mb=0)
    assert not stores, "nothing is stored: every split goes through loader workers"

    assert streamed["history"] == stored["history"]
    assert streamed["ood"] == stored["ood"]
