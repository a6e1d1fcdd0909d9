"""LP streamed from the on-disk feature cache: the same selection and heads as in memory,
without ever reading ID train's features into memory; ``auto`` streams only large features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import lpft.methods.lp as lp
from lpft.config import resolve_config
from lpft.errors import ConfigError
from lpft.methods.lp import LinearProbeOptions, load_heads
from lpft.run.context import FeatureStore
from lpft.run.runner import Runner
from lpft.training.feature_cache import NpyRowChunks

CS = [1e-2, 1e-1, 1.0, 10.0]


@pytest.fixture
def requested(monkeypatch) -> list[str]:
    """Every split whose features a run asked the store for in memory."""
    splits: list[str] = []
    original = FeatureStore.get

    def recording(self, split: str, with_blocks: bool = False):
        splits.append(split)
        return original(self, split, with_blocks)

    monkeypatch.setattr(FeatureStore, "get", recording)
    return splits


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch, isolated_cache) -> Path:
    """A feature cache of this test's own: its only ID train entry is this benchmark's."""
    home = tmp_path / "home"
    monkeypatch.setenv("LPFT_HOME", str(home))
    return home


def lp_run(tiny_overrides: dict, name: str, **lp_options) -> tuple[Runner, dict]:
    overrides = {**tiny_overrides, "seeds": 1, "keep_checkpoints": True}
    overrides["out"] = f"{tiny_overrides['out']}-{name}"
    overrides["methods"] = {"lp": {"C": CS, **lp_options}}
    runner = Runner(resolve_config(overrides=overrides), quiet=True)
    return runner, runner.run()


def selected_c(results: dict) -> float:
    return results["methods"]["lp"]["seeds"][0]["selected"]["hparams"]["C"]


def streamed_flags(runner: Runner) -> set[bool]:
    (cell,) = runner.cells["lp"]
    return {candidate.info["streamed"] for candidate in cell.candidates}


def cached_train_features(home: Path) -> torch.Tensor:
    (key_file,) = [
        path
        for path in (home / "features").glob("*/key.json")
        if json.loads(path.read_text())["split"] == "id_train"
    ]
    return torch.from_numpy(np.load(key_file.parent / "features.npy").astype(np.float64))


def test_streamed_lp_matches_in_memory_lp_without_loading_train(
    tiny_overrides: dict, requested: list[str], private_home: Path, monkeypatch
) -> None:
    chunk_reads: list[int] = []
    original_chunks = NpyRowChunks.chunks

    def counting(self, size: int):
        for block in original_chunks(self, size):
            chunk_reads.append(len(block))
            yield block

    monkeypatch.setattr(NpyRowChunks, "chunks", counting)
    in_memory, memory_results = lp_run(tiny_overrides, "never", stream="never")
    assert "id_train" in requested and chunk_reads == []
    requested.clear()
    # Blocks of 7 rows (16 features as float64), so the 48 training rows span several.
    monkeypatch.setattr(lp, "STREAM_CHUNK_BYTES", 7 * 16 * 8)
    streamed, stream_results = lp_run(tiny_overrides, "always", stream="always")
    assert "id_train" not in requested and "id_val" in requested
    assert chunk_reads and max(chunk_reads) == 7

    assert selected_c(stream_results) == selected_c(memory_results)
    assert streamed_flags(streamed) == {True} and streamed_flags(in_memory) == {False}
    for runner in (in_memory, streamed):
        assert all(c.info["converged"] for c in runner.cells["lp"][0].candidates)
    w_memory, b_memory = load_heads(in_memory.cells["lp"][0].directory)
    w_stream, b_stream = load_heads(streamed.cells["lp"][0].directory)
    x = cached_train_features(private_home)
    for index, C in enumerate(CS):
        logits_memory = x @ w_memory[index].T + b_memory[index]
        logits_stream = x @ w_stream[index].T + b_stream[index]
        assert float((logits_memory - logits_stream).abs().max()) <= 1e-4, C


def test_auto_streams_only_features_beyond_its_share_of_memory(
    tiny_overrides: dict, requested: list[str], monkeypatch
) -> None:
    small, _ = lp_run(tiny_overrides, "auto")
    assert streamed_flags(small) == {False}
    requested.clear()
    monkeypatch.setattr(lp, "IN_MEMORY_SHARE", 0.0)
    large, _ = lp_run(tiny_overrides, "auto-large")
    assert streamed_flags(large) == {True} and "id_train" not in requested

    monkeypatch.setattr(lp, "IN_MEMORY_SHARE", 1 / 2)
    memory = 64 * 2**30
    assert not lp.exceeds_memory_share(10**6, 1024, 10, memory)  # 30.8 GiB: under 32 GiB
    assert lp.exceeds_memory_share(11 * 10**5, 1024, 10, memory)


def test_memory_planning_counts_the_class_arrays_and_the_device_memory(monkeypatch) -> None:
    """n x k float64 arrays matter when k is large (ImageNet's 1000 classes); an in-memory
    solve that does not fit the accelerator's memory runs on the host."""
    memory = 4 * 2**30
    assert not lp.exceeds_memory_share(100_000, 512, 10, memory)  # 1.6 GiB of 2 GiB
    assert lp.exceeds_memory_share(100_000, 512, 1000, memory)  # 4.5 GiB: n x d alone, 0.4
    cuda = torch.device("cuda")
    monkeypatch.setattr(lp, "device_memory_bytes", lambda device: memory)
    assert lp.solve_device(cuda, 100_000, 512, 10) == cuda
    assert lp.solve_device(cuda, 100_000, 512, 1000) == torch.device("cpu")


def test_a_dense_newton_solve_that_would_not_fit_is_refused(
    tiny_overrides: dict, monkeypatch
) -> None:
    monkeypatch.setattr(lp, "physical_memory_bytes", lambda: 100_000)
    with pytest.raises(ConfigError, match="lp solver 'newton': a dense Hessian over 68 param"):
        lp_run(tiny_overrides, "newton-too-large", solver="newton")
    monkeypatch.setattr(lp, "physical_memory_bytes", lambda: 2**30)
    _, results = lp_run(tiny_overrides, "newton", solver="newton")
    assert results["methods"]["lp"]["seeds"][0]["selected"]["solver"] == "newton"


def test_streaming_needs_newton_cg_eval_features_and_the_disk_cache(tiny_overrides: dict) -> None:
    with pytest.raises(ValueError, match="solver 'newton' needs the features in memory"):
        LinearProbeOptions(stream="always", solver="newton")
    with pytest.raises(ValueError, match="augmented train features are kept in memory only"):
        LinearProbeOptions(stream="always", train_features="augmented")
    assert LinearProbeOptions(stream="auto", solver="official").stream == "auto"
    with pytest.raises(ConfigError, match="stream: 'always' reads the on-disk feature cache"):
        lp_run({**tiny_overrides, "feature_cache": False}, "no-cache", stream="always")
