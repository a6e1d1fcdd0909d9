"""Extra metrics a benchmark scores (e.g. WILDS' worst_region) become table columns by name
(values in a real table: tests/data/test_fmow.py)."""

from __future__ import annotations

from typing import Any

from lpft.analysis.tables import columns


def stat(mean: float) -> dict[str, float]:
    return {"mean": mean, "half_width": float("nan"), "n": 1}


def results_with(metrics: dict[str, list[str]] | None, scores: dict | None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "id_test": stat(0.9),
        "ood": {"africa": stat(0.5)},
        "ood_avg": stat(0.5),
        "failed_cells": 0,
    }
    if scores is not None:
        summary["scores"] = scores
    benchmark: dict[str, Any] = {"name": "fmow", "ood": {"africa": {"size": 3}}}
    if metrics is not None:
        benchmark["metrics"] = metrics
    return {
        "benchmark": benchmark,
        "methods": {
            "lp": {"hidden": False, "describe": {"batchnorm": "frozen"}, "summary": summary}
        },
    }


FMOW_METRICS = {"id_test": ["accuracy", "worst_region"], "africa": ["accuracy", "worst_region"]}
FMOW_SCORES = {
    "id_test": {"accuracy": stat(0.9), "worst_region": stat(0.75)},
    "africa": {"accuracy": stat(0.5), "worst_region": stat(0.25)},
}


def test_extra_metrics_are_columns_titled_by_split_and_name() -> None:
    results = results_with(FMOW_METRICS, FMOW_SCORES)
    titles = [c.title for c in columns(results)]
    assert titles == ["ID test", "OOD africa", "ID test worst_region", "OOD africa worst_region"]


def test_results_without_extra_metrics_keep_their_columns() -> None:
    assert [c.title for c in columns(results_with(None, None))] == ["ID test", "OOD africa"]
    plain = {"id_test": ["accuracy"], "africa": ["accuracy"]}
    assert [c.title for c in columns(results_with(plain, None))] == ["ID test", "OOD africa"]
