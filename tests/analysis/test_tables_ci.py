"""The report's accuracy table: intervals against scipy's t distribution, merged runs, bold."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from lpft.analysis import tables


def t_interval(values: list[float], confidence: float) -> tuple[float, float]:
    """Mean and half-width of the two-sided t interval, straight from scipy."""
    sample = np.asarray(values, dtype=float)
    sem = sample.std(ddof=1) / math.sqrt(sample.size)
    low, high = stats.t.interval(confidence, sample.size - 1, loc=sample.mean(), scale=sem)
    return float(sample.mean()), float((high - low) / 2)


def selected_values(entry: dict[str, Any], column: str) -> list[float]:
    distinct = entry["seeds"] if entry["seed_dependent"] else entry["seeds"][:1]
    chosen = [seed["selected"] for seed in distinct]
    if column == "id_test":
        return [c["id_test"] for c in chosen]
    if column == "ood_avg":
        return [float(np.mean(list(c["ood"].values()))) for c in chosen]
    return [c["ood"][column.removeprefix("ood:")] for c in chosen]


@pytest.mark.parametrize("failed_lr", [None, 1e-2])
def test_table_intervals_match_scipy_t_interval_on_selected_candidates(
    synthetic, failed_lr
) -> None:
    results = synthetic(seeds=4, failed_lr=failed_lr, rng_seed=3)
    table = tables.multi_run_table([("a", results)])
    checked = 0
    for row in table.rows:
        entry = results["methods"][row.method]
        for column in tables.columns(results):
            values = selected_values(entry, column.key)
            stat = row.values[tables.group_key("a", column)]
            if len(values) == 1:  # LP: one fit shared by every seed
                assert stat["mean"] == pytest.approx(values[0], abs=1e-12)
                assert math.isnan(stat["half_width"])
            elif np.ptp(values) == 0:
                assert stat["mean"] == pytest.approx(values[0], abs=1e-12)
                assert stat["half_width"] == pytest.approx(0.0, abs=1e-12)
            else:
                mean, half = t_interval(values, results["confidence"])
                assert stat["mean"] == pytest.approx(mean, abs=1e-12)
                assert stat["half_width"] == pytest.approx(half, rel=1e-9)
            assert stat["n"] == len(values)
            checked += 1
    assert checked == 3 * 4


def test_formatted_cells_are_percent_mean_and_half_width(synthetic) -> None:
    results = synthetic(rng_seed=5)
    table = tables.multi_run_table([("a", results)])
    ft = next(row for row in table.rows if row.method == "ft")
    mean, half = t_interval(selected_values(results["methods"]["ft"], "id_test"), 0.9)
    texts = [text for text, _ in tables.multi_run_cells(table, ft)]
    assert texts[0] == f"{mean * 100:.1f} ± {half * 100:.1f}"


def test_two_runs_give_one_column_group_per_benchmark(synthetic) -> None:
    first = synthetic("bench-a", ood=("x", "y"))
    second = synthetic("bench-b", ood=("z",), rng_seed=1)
    del second["methods"]["lpft"]
    table = tables.multi_run_table([("bench-a", first), ("bench-b", second)])
    assert [g.label for g in table.groups] == ["bench-a", "bench-b"]
    assert [c.title for c in table.groups[0].columns] == ["ID test", "OOD x", "OOD y", "OOD avg"]
    assert [c.title for c in table.groups[1].columns] == ["ID test", "OOD z"]
    lpft = next(row for row in table.rows if row.method == "lpft")
    cells = tables.multi_run_cells(table, lpft)
    assert len(cells) == 6
    assert [text for text, _ in cells[4:]] == ["—", "—"]


def test_best_mean_of_each_column_is_marked(synthetic) -> None:
    results = synthetic(rng_seed=2)
    table = tables.multi_run_table([("a", results)])
    key = tables.group_key("a", tables.columns(results)[0])
    best = max(table.rows, key=lambda row: row.values[key]["mean"])
    marks = {row.method: tables.multi_run_cells(table, row)[0][1] for row in table.rows}
    assert marks[best.method] in (tables.BEST, tables.TIE)
    if marks[best.method] == tables.BEST:
        assert all(mark is None for method, mark in marks.items() if method != best.method)


def test_caption_states_interval_selection_rule_and_batchnorm(synthetic) -> None:
    runs = [("a", synthetic("a")), ("b", synthetic("b", seeds=2))]
    for labelled in (runs[:1], runs):
        text = tables.multi_run_caption(labelled)
        assert "90% t-interval" in text
        assert "ID validation accuracy only" in text
        assert "BatchNorm" in text
    assert "b: synthetic:none, 2 seeds" in tables.multi_run_caption(runs)


def test_notes_name_batchnorm_mode_and_failed_cells(synthetic) -> None:
    results = synthetic(failed_lr=1e-1)
    table = tables.multi_run_table([("a", results)])
    notes = {row.method: tables.multi_run_notes(row) for row in table.rows}
    assert notes["lp"].startswith("BN frozen; C: 4 values")
    assert notes["ft"].startswith("BN train; lr: 0.001, 0.01, 0.1")
    assert notes["ft"].endswith(", 1 failed cell(s)")
    assert notes["lpft"].startswith("BN eval; lr: 1e-05, 0.0001")
    assert "; selected C=100;" in notes["lp"] or notes["lp"].endswith("; selected C=100")
    assert "; selected lr=" in notes["ft"]


def test_single_run_markdown_table_is_unchanged(synthetic) -> None:
    results = synthetic()
    text = tables.markdown_table(results)
    assert (
        text.splitlines()[0]
        == "| method | setting | ID test | OOD shift-1 | OOD shift-2 | OOD avg |"
    )


def test_selected_setting_counts_seeds_and_follows_the_axes() -> None:
    def seed(hparams: dict[str, Any]) -> dict[str, Any]:
        return {"selected": {"hparams": hparams}}

    entry = {
        "axes": ["lr", "alpha"],
        "seed_dependent": True,
        "seeds": [
            seed({"alpha": 1.0, "lr": 0.01}),
            seed({"alpha": 0.1, "lr": 0.003}),
            seed({"alpha": 1.0, "lr": 0.01}),
            {"selected": None},
        ],
    }
    assert tables.selected_setting(entry) == "lr=0.01 alpha=1 ×2, lr=0.003 alpha=0.1"
    shared = {"axes": ["C"], "seed_dependent": False, "seeds": [seed({"C": 0.0215443})] * 3}
    assert tables.selected_setting(shared) == "C=0.0215"
    named = {"axes": ["recipe"], "seed_dependent": True, "seeds": [seed({"recipe": "greedy"})]}
    assert tables.selected_setting(named) == "recipe=greedy"
