"""The on-disk feature cache: reused across runs, invalidated by weights or transform, atomic;
and the LP streamed over a cached ``.npy`` file reaches the in-memory optimum."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms

import lpft.run.context as run_context
from data_fixtures import make_folder_dataset, write_image
from lpft.config import resolve_config
from lpft.data import folder
from lpft.models import save_backbone_checkpoint
from lpft.models.glyph_resnet import GlyphResNet
from lpft.run.runner import Runner
from lpft.training.feature_cache import STALE_SECONDS, FeatureCache, FeatureKey, NpyRowChunks
from lpft.training.logreg import LogisticRegressionPath
from tests_support import ArrayImages

TINY_KWARGS = {"widths": [8, 16, 16], "blocks_per_stage": 1, "input_size": 8}


@pytest.fixture
def image_loads(monkeypatch) -> list[int]:
    """Every image the tiny benchmark hands out, counted."""
    loads: list[int] = []
    original = ArrayImages.__getitem__

    def counting(self, index: int):
        loads.append(index)
        return original(self, index)

    monkeypatch.setattr(ArrayImages, "__getitem__", counting)
    return loads


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LPFT_HOME", str(home))
    return home


def lp_run(
    tmp_path: Path, name: str, model: str = "builtin:tiny-test", seeds: int = 1, **extra
) -> dict:
    overrides = {
        "benchmark": "tiny",
        "model": model,
        "seeds": seeds,
        "out": str(tmp_path / name),
        "report": False,
        "device": "cpu",
        "methods": {"lp": {"C": [1e-2, 1.0]}},
        **extra,
    }
    return Runner(resolve_config(overrides=overrides), quiet=True).run()


def lp_numbers(results: dict) -> list:
    seed = results["methods"]["lp"]["seeds"][0]
    return [seed["selected"]["hparams"], seed["selected"]["id_test"], seed["selected"]["ood"]]


def test_second_run_reads_no_image_and_gets_the_same_numbers(
    tmp_path: Path, private_home: Path, image_loads: list[int]
) -> None:
    first = lp_run(tmp_path, "first")
    assert image_loads, "the first run extracts features from images"
    image_loads.clear()
    second = lp_run(tmp_path, "second")
    assert image_loads == []
    assert lp_numbers(second) == lp_numbers(first)
    assert any((private_home / "features").iterdir())


def augmented_lp_run(tmp_path: Path, name: str, seeds: int) -> dict:
    return lp_run(
        tmp_path,
        name,
        seeds=seeds,
        benchmark_options={"augment": "rrc_flip"},
        methods={"lp": {"C": [1e-2, 1.0], "train_features": "augmented"}},
    )


def test_augmented_passes_are_cached_per_seed(
    tmp_path: Path, private_home: Path, image_loads: list[int]
) -> None:
    first = augmented_lp_run(tmp_path, "first", seeds=1)
    image_loads.clear()
    second = augmented_lp_run(tmp_path, "second", seeds=1)
    assert image_loads == [], "seed 0's augmented pass and the eval splits come from disk"
    assert lp_numbers(second) == lp_numbers(first)
    keys = [json.loads(p.read_text()) for p in (private_home / "features").glob("*/key.json")]
    augmented = [key for key in keys if key["seed"] is not None]
    assert [(key["split"], key["augment_pass"]) for key in augmented] == [("id_train", 0)]
    assert augmented[0]["transform"] != next(k for k in keys if k["seed"] is None)["transform"]
    image_loads.clear()
    augmented_lp_run(tmp_path, "two-seeds", seeds=2)
    assert image_loads, "seed 1's pass is new and must be extracted"
    entries = list((private_home / "features").glob("*/key.json"))
    assert len(entries) == len(keys) + 1


def test_evaluation_splits_are_extracted_once_for_lp_and_ft_together(
    tmp_path: Path, private_home: Path
) -> None:
    lp_run(tmp_path, "both", methods={"lp": {"C": [1.0]}, "ft": {"lrs": [1e-2], "epochs": 1}})
    keys = [json.loads(p.read_text()) for p in (private_home / "features").glob("*/key.json")]
    splits = sorted(key["split"] for key in keys)
    assert len(splits) == len(set(splits)), f"a split was extracted twice: {splits}"
    evaluated = [key for key in keys if key["split"] not in ("id_train", "id_val")]
    assert evaluated and all(key["with_blocks"] for key in evaluated)


def test_changed_weights_invalidate(
    tmp_path: Path, private_home: Path, image_loads: list[int]
) -> None:
    checkpoint = tmp_path / "net.pt"
    torch.manual_seed(0)
    save_backbone_checkpoint(checkpoint, "glyph-resnet", TINY_KWARGS, GlyphResNet((8, 16, 16), 1))
    lp_run(tmp_path, "first", model=f"file:{checkpoint}")
    image_loads.clear()
    torch.manual_seed(1)
    save_backbone_checkpoint(checkpoint, "glyph-resnet", TINY_KWARGS, GlyphResNet((8, 16, 16), 1))
    lp_run(tmp_path, "second", model=f"file:{checkpoint}")
    assert image_loads, "same spec, other weights: features must be extracted again"


def test_changed_transform_invalidates(
    tmp_path: Path, private_home: Path, image_loads: list[int], monkeypatch
) -> None:
    lp_run(tmp_path, "first")
    image_loads.clear()
    original = run_context.pixel_transform

    def with_extra_step(*args, **kwargs):
        return transforms.Compose([original(*args, **kwargs), transforms.Lambda(lambda x: x // 2)])

    monkeypatch.setattr(run_context, "pixel_transform", with_extra_step)
    lp_run(tmp_path, "second")
    assert image_loads, "another transform: features must be extracted again"


def folder_lp_run(tmp_path: Path, root: Path, name: str) -> dict:
    overrides = {
        "benchmark": "folder",
        "data_root": str(root),
        # Images are then decoded when read, not all up front: each decode is a load.
        "benchmark_options": {"verify_images": False},
        "model": "builtin:tiny-test",
        "seeds": 1,
        "out": str(tmp_path / name),
        "report": False,
        "device": "cpu",
        "methods": {"lp": {"C": [1e-2, 1.0]}},
    }
    return Runner(resolve_config(overrides=overrides), quiet=True).run()


def train_entries(home: Path) -> dict[str, np.ndarray]:
    """ID train's cache entries, by directory name."""
    entries = {}
    for key_file in (home / "features").glob("*/key.json"):
        if json.loads(key_file.read_text())["split"] == "id_train":
            entries[key_file.parent.name] = np.load(key_file.parent / "features.npy")
    return entries


def test_an_image_rewritten_in_place_is_extracted_again(
    tmp_path: Path, private_home: Path, monkeypatch
) -> None:
    root = make_folder_dataset(tmp_path / "data")
    decoded: list[str] = []
    original = folder.decode
    monkeypatch.setattr(folder, "decode", lambda path: decoded.append(path) or original(path))
    folder_lp_run(tmp_path, root, "first")
    assert decoded, "the first run extracts features from the images"
    decoded.clear()
    folder_lp_run(tmp_path, root, "second")
    assert decoded == []
    (old_entry, old_features), *others = train_entries(private_home).items()
    assert not others

    # Rows of ID train follow class folders, then file names: cat/0.png is row 0.
    target = root / "train" / "cat" / "0.png"
    before = target.stat().st_mtime_ns
    write_image(target, 250, seed=999)
    assert target.stat().st_mtime_ns != before
    decoded.clear()
    folder_lp_run(tmp_path, root, "third")
    assert str(target) in decoded
    assert all(Path(p).is_relative_to(root / "train") for p in decoded), "other splits reused"
    new = {k: v for k, v in train_entries(private_home).items() if k != old_entry}
    (new_features,) = new.values()
    assert not np.allclose(new_features[0], old_features[0])
    np.testing.assert_array_equal(new_features[1:], old_features[1:])


def key(split: str = "id_train") -> FeatureKey:
    return FeatureKey("spec", "0" * 64, "bench", split, "transform")


def test_killed_extraction_leaves_nothing_that_is_read(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)

    def batches():
        yield torch.ones(4, 3), torch.zeros(4, dtype=torch.long), {}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_extract(key(), 8, batches)
    assert cache.lookup(key()) is None
    assert list(tmp_path.iterdir()) == []

    def complete():
        for start in range(0, 8, 4):
            rows = torch.arange(start, start + 4, dtype=torch.float32)
            yield rows[:, None].repeat(1, 3), rows.long(), {"stage1": rows[:, None]}

    entry = cache.get_or_extract(key(), 8, complete)
    reread = FeatureCache(tmp_path).lookup(key())
    assert reread is not None and isinstance(reread.features, np.memmap)
    np.testing.assert_array_equal(reread.features[:, 0], np.arange(8))
    np.testing.assert_array_equal(reread.labels, np.arange(8))
    np.testing.assert_array_equal(entry.blocks["stage1"][:, 0], np.arange(8))
    assert FeatureCache(tmp_path).lookup(key("id_val")) is None


def owned_temporary(root: Path, owner: str, age: float = 0.0) -> Path:
    """A temporary entry directory named for ``owner`` ("pid@host"), last written ``age`` ago."""
    path = root / f".{'ab' * 16}.{owner}.q1w2e3.tmp"
    path.mkdir(parents=True)
    (path / "features.npy").write_bytes(b"rows")
    written = time.time() - age
    for item in (path / "features.npy", path):
        os.utime(item, (written, written))
    return path


def test_only_temporaries_whose_owner_is_gone_are_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    host, old = socket.gethostname(), STALE_SECONDS + 600
    kept = {
        owned_temporary(tmp_path, f"{os.getpid()}@{host}", age=old),  # alive, however old
        owned_temporary(tmp_path, "4242@elsewhere.example"),  # another host, recent
    }
    removed = {
        owned_temporary(tmp_path, f"{finished.pid}@{host}"),  # its process has exited
        owned_temporary(tmp_path, "4242@elsewhere.example.org", age=old),
    }
    unnamed = tmp_path / ".0123abcd.x9y8.tmp"
    unnamed.mkdir()
    kept.add(unnamed)
    FeatureCache(tmp_path)
    assert set(tmp_path.glob(".*.tmp")) == kept
    assert not any(path.exists() for path in removed)


EXTRACTING_CHILD = """
import json, sys, time
from pathlib import Path
import torch
from lpft.training.feature_cache import FeatureCache, FeatureKey

root, flags = Path(sys.argv[1]), Path(sys.argv[2])

def batches():
    for start in range(0, 8, 4):
        rows = torch.arange(start, start + 4, dtype=torch.float32)
        yield rows[:, None].repeat(1, 3), rows.long(), {"stage1": rows[:, None]}
        if start == 0:
            (flags / "first-batch-written").touch()
            deadline = time.monotonic() + 120
            while not (flags / "second-opened").exists() and time.monotonic() < deadline:
                time.sleep(0.01)

key = FeatureKey("spec", "0" * 64, "bench", "id_train", "transform")
entry = FeatureCache(root).get_or_extract(key, 8, batches)
print(json.dumps([entry.features.tolist(), entry.labels.tolist(), entry.blocks["stage1"].tolist()]))
"""


def extraction_rows():
    for start in range(0, 8, 4):
        rows = torch.arange(start, start + 4, dtype=torch.float32)
        yield rows[:, None].repeat(1, 3), rows.long(), {"stage1": rows[:, None]}


def test_two_processes_extracting_the_same_features_both_succeed(tmp_path: Path) -> None:
    """The second process opens the cache while the first is mid-extraction."""
    root, flags = tmp_path / "features", tmp_path / "flags"
    flags.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen(
        [sys.executable, "-c", EXTRACTING_CHILD, str(root), str(flags)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (flags / "first-batch-written").exists() and first.poll() is None:
            assert time.monotonic() < deadline, "the first extraction never started"
            time.sleep(0.01)
        cache = FeatureCache(root)
        (flags / "second-opened").touch()
        second = cache.get_or_extract(key(), 8, extraction_rows)
        stdout, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, stderr[-2000:]
    features, labels, block = json.loads(stdout)
    np.testing.assert_array_equal(np.array(features, dtype=np.float32), second.features)
    np.testing.assert_array_equal(labels, second.labels)
    np.testing.assert_array_equal(np.array(block, dtype=np.float32), second.blocks["stage1"])
    assert [p.name for p in root.iterdir()] == [key().digest()]


def test_streamed_lp_matches_in_memory_lp(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, d, k = 600, 24, 4
    labels = rng.integers(k, size=n)
    means = rng.normal(size=(k, d)) / np.sqrt(np.arange(1, d + 1))
    x = np.maximum(means[labels] + rng.normal(size=(n, d)) / np.arange(1, d + 1) + 0.3, 0)
    x = x.astype(np.float32)
    np.save(tmp_path / "features.npy", x)
    Cs, tol = [1e-3, 1e-1, 10.0], 1e-8
    in_memory = LogisticRegressionPath(
        torch.from_numpy(x), torch.from_numpy(labels), k, tol=tol, solver="newton-cg"
    )
    source = NpyRowChunks(tmp_path / "features.npy")
    streamed = LogisticRegressionPath.streamed(
        source, torch.from_numpy(labels), k, tol=tol, chunk_rows=97
    )
    features = torch.from_numpy(x).double()
    for a, b in zip(in_memory.fit_path(Cs), streamed.fit_path(Cs), strict=True):
        assert a.converged and b.converged
        # Both gradients are below tol, so both points lie within 2 tol sqrt(#params) C n of the
        # optimum in standardised coordinates (strong convexity 1 / (C n)).
        bound = 2 * tol * np.sqrt(k * (d + 1)) * a.C * n / in_memory.basis.scale
        assert float((a.weight - b.weight).norm()) <= bound
        logits_a = features @ a.weight.T + a.bias
        logits_b = features @ b.weight.T + b.bias
        assert torch.equal(logits_a.argmax(1), logits_b.argmax(1))


def test_an_unreadable_entry_is_replaced(tmp_path: Path) -> None:
    broken = tmp_path / key().digest()
    broken.mkdir()
    (broken / "key.json").write_text("{")
    cache = FeatureCache(tmp_path)
    assert cache.lookup(key()) is None

    def batches():
        yield torch.full((4, 2), 3.0), torch.zeros(4, dtype=torch.long), {}

    entry = cache.get_or_extract(key(), 4, batches)
    np.testing.assert_array_equal(entry.features, np.full((4, 2), 3.0))
    assert FeatureCache(tmp_path).lookup(key()) is not None
