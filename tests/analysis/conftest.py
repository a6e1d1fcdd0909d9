"""Synthetic run directories for the report tests.

``synthetic_results`` builds a ``results.json`` document that follows the ``lpft-results-v1``
schema (docs/results-schema.md) field for field, with made-up accuracies and distortions drawn
from a seeded generator: it is synthetic, not the output of a training run. The per-method
``summary`` is computed by the engine's own ``summarise`` so that it is what ``lpft run`` would
write for these cells.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lpft.run.results import summarise

LP_CS = [1e-4, 1e-2, 1.0, 100.0]
FT_LRS = [1e-3, 1e-2, 1e-1]
LPFT_LRS = [1e-5, 1e-4]
WISE_ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
L2SP_ALPHAS = [0.01, 1.0]
BLOCKS = ["stem", "stage1", "stage2", "stage3"]
EPOCHS = 3


def _accuracies(rng: np.random.Generator, level: float, ood: list[str]) -> dict[str, Any]:
    return {
        "id_test": float(np.clip(level + rng.normal(0, 0.03), 0, 1)),
        "ood": {name: float(np.clip(level - 0.2 + rng.normal(0, 0.05), 0, 1)) for name in ood},
    }


def _distortion(rng: np.random.Generator, scale: float, ood: list[str]) -> dict[str, Any]:
    def change(size: float) -> dict[str, float]:
        return {
            "l2": float(size * rng.uniform(0.8, 1.2)),
            "relative": float(size * rng.uniform(0.1, 0.2)),
            "cka": float(1 - min(size, 1) * rng.uniform(0.1, 0.5)),
        }

    return {
        split: {
            "penultimate": change(scale),
            "blocks": {b: change(scale * (i + 1) / len(BLOCKS)) for i, b in enumerate(BLOCKS)},
        }
        for split in ["id_test", *ood]
    }


def _select(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Highest ID val accuracy, first in grid order on ties (the engine's rule)."""
    best, best_val = None, -1.0
    for cell in cells:
        for candidate in cell["candidates"] if cell["status"] == "done" else []:
            if candidate["id_val"] > best_val:
                best, best_val = candidate, candidate["id_val"]
    return best


def _lp_cells(rng: np.random.Generator, ood: list[str]) -> list[dict[str, Any]]:
    candidates = []
    for index, c in enumerate(LP_CS):
        level = 0.5 + 0.1 * index
        candidates.append(
            {
                "hparams": {"C": c},
                "id_val": float(level + rng.normal(0, 0.01)),
                "solver": "newton",
                "iterations": 5,
                "converged": True,
                "grad_max": 1e-9,
                **_accuracies(rng, level, ood),
            }
        )
    return [
        {"hparams": {}, "status": "done", "error": None, "seconds": 1.0, "candidates": candidates}
    ]


def _wise_cells(rng: np.random.Generator, ood: list[str]) -> list[dict[str, Any]]:
    """One cell whose candidates follow the alpha path (no training, no history)."""
    candidates = []
    for alpha in WISE_ALPHAS:
        level = 0.7 + 0.1 * alpha * (1 - alpha)
        candidates.append(
            {
                "hparams": {"alpha": alpha},
                "id_val": float(level + rng.normal(0, 0.01)),
                **_accuracies(rng, level, ood),
                "distortion": _distortion(rng, alpha, ood),
            }
        )
    return [
        {"hparams": {}, "status": "done", "error": None, "seconds": 1.0, "candidates": candidates}
    ]


def _ft_cell(
    rng: np.random.Generator,
    lr: float,
    level: float,
    scale: float,
    ood: list[str],
    failed: bool,
    extra: dict[str, float] | None = None,
) -> dict[str, Any]:
    hparams = {"lr": lr, **(extra or {})}
    if failed:
        return {
            "hparams": hparams,
            "status": "failed",
            "error": "non-finite loss at step 7",
            "seconds": 0.5,
            "candidates": [],
        }
    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_acc": min(1.0, level + 0.05 * e),
            "id_val": float(level - 0.05 * (EPOCHS - e) + rng.normal(0, 0.01)),
            "lr": lr,
        }
        for e in range(1, EPOCHS + 1)
    ]
    best = max(history, key=lambda record: record["id_val"])
    candidate = {
        "hparams": hparams,
        "id_val": best["id_val"],
        "best_epoch": best["epoch"],
        "train_seconds": 2.0,
        "history": history,
        **_accuracies(rng, level, ood),
        "distortion": _distortion(rng, scale, ood),
    }
    return {
        "hparams": hparams,
        "status": "done",
        "error": None,
        "seconds": 2.0,
        "candidates": [candidate],
    }


def _unevaluated(cell: dict[str, Any]) -> dict[str, Any]:
    """A fitted cell whose candidates have no test metrics yet (a partial run)."""
    keep = [
        {k: v for k, v in c.items() if k not in ("id_test", "ood", "distortion")}
        for c in cell["candidates"]
    ]
    return {**cell, "candidates": keep}


def _method(
    name: str,
    describe: dict[str, str],
    seeds: list[dict[str, Any]],
    ood: list[str],
    axes: list[str],
    curve: str | None = None,
) -> dict[str, Any]:
    return {
        "method": name.split("@")[0],
        "axes": axes,
        "curve": curve,
        "hidden": False,
        "seed_dependent": name != "lp",
        "describe": describe,
        "seeds": seeds,
        "summary": summarise(seeds, ood, seed_dependent=name != "lp"),
    }


def synthetic_results(
    benchmark: str = "synthetic-a",
    ood: tuple[str, ...] = ("shift-1", "shift-2"),
    seeds: int = 3,
    status: str = "complete",
    failed_lr: float | None = None,
    evaluated: bool = True,
    rng_seed: int = 0,
    new_methods: bool = False,
) -> dict[str, Any]:
    """A schema-valid, synthetic results.json document (see the module docstring)."""
    rng = np.random.default_rng(rng_seed)
    names = list(ood)
    lp_cells = _lp_cells(rng, names)
    methods: dict[str, Any] = {
        "lp": _method(
            "lp",
            {"batchnorm": "frozen", "grid": f"C: {len(LP_CS)} values"},
            [{"seed": s, "selected": _select(lp_cells), "cells": lp_cells} for s in range(seeds)],
            names,
            ["C"],
        )
    }
    settings = {"ft": (FT_LRS, 0.75, 2.0, "train"), "lpft": (LPFT_LRS, 0.85, 0.02, "eval")}
    for key, (lrs, level, scale, batchnorm) in settings.items():
        seed_entries = []
        for s in range(seeds):
            cells = [
                _ft_cell(rng, lr, level - 0.05 * i, scale, names, lr == failed_lr and s == 0)
                for i, lr in enumerate(lrs)
            ]
            if not evaluated:
                cells = [_unevaluated(c) for c in cells]
            seed_entries.append({"seed": s, "selected": _select(cells), "cells": cells})
        describe = {"batchnorm": batchnorm, "grid": "lr: " + ", ".join(f"{lr:g}" for lr in lrs)}
        methods[key] = _method(key, describe, seed_entries, names, ["lr"])
    if new_methods:
        methods.update(_new_methods(rng, seeds, names, evaluated))
    return {
        "schema": "lpft-results-v1",
        "lpft_version": "0.1.0",
        "status": status,
        "benchmark": {
            "name": benchmark,
            "classes": [str(i) for i in range(10)],
            "augment": "none",
            "sizes": {"id_train": 200, "id_val": 100, "id_test": 300},
            "ood": {name: {"size": 150, "class_subset": None} for name in names},
            "skipped_bad_images": 0,
            "bad_images": [],
        },
        "model": "synthetic:none",
        "device": "cpu",
        "selection": "id_val",
        "confidence": 0.9,
        "seeds": seeds,
        "wall_seconds": 12.0,
        "config": {"benchmark": benchmark, "seeds": seeds},
        "methods": methods,
    }


def _new_methods(
    rng: np.random.Generator, seeds: int, names: list[str], evaluated: bool
) -> dict[str, Any]:
    """A WiSE-FT-like method (one axis, drawn as a path) and an L2-SP-like one (two axes)."""
    wise, l2sp = [], []
    for s in range(seeds):
        cells = _wise_cells(rng, names)
        grid = [
            _ft_cell(rng, lr, 0.8 - 0.02 * i, 1.0, names, False, {"alpha": alpha})
            for i, (lr, alpha) in enumerate((lr, a) for lr in FT_LRS for a in L2SP_ALPHAS)
        ]
        if not evaluated:
            cells, grid = [_unevaluated(c) for c in cells], [_unevaluated(c) for c in grid]
        wise.append({"seed": s, "selected": _select(cells), "cells": cells})
        l2sp.append({"seed": s, "selected": _select(grid), "cells": grid})
    return {
        "wise-ft": _method(
            "wise-ft",
            {"batchnorm": "interpolated", "grid": "alpha: 5 values"},
            wise,
            names,
            ["alpha"],
            curve="alpha",
        ),
        "l2sp": _method(
            "l2sp", {"batchnorm": "train", "grid": "lr x alpha"}, l2sp, names, ["lr", "alpha"]
        ),
    }


def write_run_dir(directory: Path, results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2))
    return directory


@pytest.fixture(scope="session")
def synthetic() -> Callable[..., dict[str, Any]]:
    """``synthetic(**kwargs)`` -> a synthetic results.json document (``synthetic_results``)."""
    return synthetic_results


@pytest.fixture
def make_run_dir(tmp_path: Path) -> Callable[..., Path]:
    """``make_run_dir(name, **synthetic_results_kwargs)`` -> a run directory under tmp_path;
    ``name`` may hold slashes."""

    def make(name: str = "run", **kwargs: Any) -> Path:
        return write_run_dir(tmp_path / name, synthetic_results(**kwargs))

    return make
