"""Block outputs are captured from compiled backbones too (``--compile``)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from lpft.config import resolve_config
from lpft.run.runner import Runner


def test_compiled_fine_tune_in_a_fresh_run_records_every_blocks_distortion(
    tiny_overrides: dict, monkeypatch
) -> None:
    """TorchDynamo's behaviour with hooks does not depend on the code generator, so the test
    compiles with the eager backend (seconds) instead of inductor (minutes on two cores)."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    tiny_overrides.update(
        compile=True, seeds=1, methods={"ft": {"epochs": 1, "batch_size": 8, "lrs": [0.01]}}
    )
    Runner(resolve_config(overrides=tiny_overrides), quiet=True).run()
    results = json.loads((Path(tiny_overrides["out"]) / "results.json").read_text())
    distortion = results["methods"]["ft"]["seeds"][0]["selected"]["distortion"]
    assert set(distortion["id_test"]["blocks"]) == {"stem", "stage1", "stage2", "stage3"}
