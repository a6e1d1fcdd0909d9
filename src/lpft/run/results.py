"""Assemble ``results.json`` from the cell records (schema: docs/results-schema.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lpft import RESULTS_SCHEMA, __version__
from lpft.analysis.stats import CONFIDENCE, mean_ci
from lpft.data import Benchmark, EvalSplit
from lpft.io import atomic_write_json
from lpft.methods.base import Candidate
from lpft.run.rundir import CellRecord

DISTORTION_MEASURES = ("l2", "relative", "cka")


def select(cells: list[CellRecord]) -> tuple[CellRecord, int] | None:
    """The candidate with the highest ID val accuracy; first in grid order on ties."""
    best: tuple[CellRecord, int] | None = None
    best_val = -math.inf
    for cell in cells:
        if cell.status != "done":
            continue
        for index, candidate in enumerate(cell.candidates):
            if candidate.id_val > best_val:
                best, best_val = (cell, index), candidate.id_val
    return best


def candidate_entry(candidate: Candidate, metrics: dict[str, Any] | None) -> dict[str, Any]:
    info = {k: v for k, v in candidate.info.items() if k != "history"}
    entry: dict[str, Any] = {"hparams": candidate.hparams, "id_val": candidate.id_val, **info}
    if "history" in candidate.info:
        entry["history"] = candidate.info["history"]
    if metrics is not None:
        entry.update(metrics)
    return entry


def cell_entry(cell: CellRecord) -> dict[str, Any]:
    metrics = cell.metrics or [None] * len(cell.candidates)
    return {
        "hparams": cell.hparams,
        "status": cell.status,
        "error": cell.error,
        "seconds": cell.seconds,
        "candidates": [
            candidate_entry(c, m) for c, m in zip(cell.candidates, metrics, strict=True)
        ],
    }


def selected_entry(cells: list[CellRecord]) -> dict[str, Any] | None:
    choice = select(cells)
    if choice is None:
        return None
    cell, index = choice
    metrics = cell.metrics[index] if cell.metrics else None
    return candidate_entry(cell.candidates[index], metrics)


def oracle_entry(cells: list[CellRecord]) -> dict[str, Any] | None:
    """The evaluated candidate with the best mean OOD validation accuracy (first in grid order
    on ties): the oracle selection, reported apart from the protocol's."""
    best: dict[str, Any] | None = None
    best_score = -math.inf
    for cell in cells:
        if cell.status != "done" or not cell.metrics:
            continue
        for candidate, metrics in zip(cell.candidates, cell.metrics, strict=True):
            scores = list(metrics.get("ood_val", {}).values())
            if scores and sum(scores) / len(scores) > best_score:
                best, best_score = candidate_entry(candidate, metrics), sum(scores) / len(scores)
    return best


def average_ood(metrics: dict[str, Any]) -> float:
    values = list(metrics.get("ood", {}).values())
    return sum(values) / len(values) if values else float("nan")


def summarise(
    seeds: list[dict[str, Any]], ood_names: list[str], seed_dependent: bool = True
) -> dict[str, Any]:
    """Mean and CI over seeds of the selected candidates (a shared cell counts once)."""
    distinct = seeds if seed_dependent else seeds[:1]
    chosen = [s["selected"] for s in distinct if s["selected"] and "id_test" in s["selected"]]
    summary: dict[str, Any] = {
        "id_val": mean_ci([c["id_val"] for c in chosen]),
        "id_test": mean_ci([c["id_test"] for c in chosen]),
        "ood": {name: mean_ci([c["ood"][name] for c in chosen]) for name in ood_names},
        "ood_avg": mean_ci([average_ood(c) for c in chosen]),
        "failed_cells": sum(
            1 for s in distinct for cell in s["cells"] if cell["status"] == "failed"
        ),
    }
    if chosen and all("scores" in c for c in chosen):
        summary["scores"] = {
            split: {
                metric: mean_ci([c["scores"][split][metric] for c in chosen])
                for metric in chosen[0]["scores"][split]
            }
            for split in chosen[0]["scores"]
        }
    with_distortion = [c["distortion"] for c in chosen if "distortion" in c]
    if with_distortion:
        summary["distortion"] = {
            split: {
                measure: mean_ci([d[split]["penultimate"][measure] for d in with_distortion])
                for measure in DISTORTION_MEASURES
            }
            for split in with_distortion[0]
        }
    return summary


def _split_entries(splits: dict[str, EvalSplit]) -> dict[str, Any]:
    return {
        name: {
            "size": len(split.dataset),
            "class_subset": list(split.class_subset) if split.class_subset else None,
        }
        for name, split in splits.items()
    }


def benchmark_entry(benchmark: Benchmark) -> dict[str, Any]:
    return {
        "name": benchmark.name,
        "classes": benchmark.classes,
        "augment": benchmark.augment,
        "sizes": {
            "id_train": len(benchmark.id_train),
            "id_val": len(benchmark.id_val),
            "id_test": len(benchmark.id_test),
        },
        "ood": _split_entries(benchmark.ood),
        "ood_val": _split_entries(benchmark.ood_val),
        "metrics": {name: list(split.metrics) for name, split in benchmark.eval_splits().items()},
        "skipped_bad_images": len(benchmark.bad_images),
        "bad_images": benchmark.bad_images,
        "info": benchmark.info,
    }


def assemble(
    *,
    config: dict[str, Any],
    benchmark: Benchmark,
    device: str,
    methods: dict[str, dict[str, Any]],
    complete: bool,
    seconds: float,
    compute_seconds: float,
) -> dict[str, Any]:
    """``methods`` maps method key -> {"method", "hidden", "describe", "seeds": [...]}."""
    ood_names = list(benchmark.ood)
    for entry in methods.values():
        entry["summary"] = summarise(entry["seeds"], ood_names, entry["seed_dependent"])
        if any("oracle_selected" in seed for seed in entry["seeds"]):
            oracle_seeds = [{**s, "selected": s["oracle_selected"]} for s in entry["seeds"]]
            entry["oracle"] = summarise(oracle_seeds, ood_names, entry["seed_dependent"])
    return {
        "schema": RESULTS_SCHEMA,
        "lpft_version": __version__,
        "status": "complete" if complete else "partial",
        "benchmark": benchmark_entry(benchmark),
        "model": config["model"],
        "device": device,
        "selection": "id_val",
        "confidence": CONFIDENCE,
        "seeds": config["seeds"],
        "wall_seconds": seconds,
        "compute_seconds": compute_seconds,
        "config": config,
        "methods": methods,
    }


def completeness(results: dict[str, Any]) -> tuple[int, int, int]:
    """How much of the run ``results`` shows: (complete, evaluated candidates, fitted cells)."""
    cells = [
        cell
        for entry in results.get("methods", {}).values()
        for seed in entry.get("seeds", [])
        for cell in seed.get("cells", [])
    ]
    evaluated = sum(1 for cell in cells for c in cell["candidates"] if "id_test" in c)
    return (int(results.get("status") == "complete"), evaluated, len(cells))


def publish_results(path: Path, results: dict[str, Any]) -> bool:
    """Write ``results`` to ``path`` unless the file there shows more of the run (an older view
    never replaces a newer one); True when written. Call under the run lock."""
    try:
        current = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        current = None
    if isinstance(current, dict) and completeness(current) > completeness(results):
        return False
    atomic_write_json(path, results)
    return True
