"""The tables never look more certain than their data: n where seeds are short, bold only for a
resolved best, ties marked, grid edges flagged, paired contrasts, intervals of non-negative
quantities cut at zero, and a report readable on a phone."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from lpft.analysis import figures, report, tables
from lpft.run.results import summarise


def write(directory: Path, results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2))
    return directory


def fail_every_cell_of_seed(results: dict[str, Any], method: str, seed: int) -> dict[str, Any]:
    results = copy.deepcopy(results)
    entry = results["methods"][method]
    seed_entry = entry["seeds"][seed]
    for cell in seed_entry["cells"]:
        cell.update(status="failed", error="non-finite loss", candidates=[])
    seed_entry["selected"] = None
    entry["summary"] = summarise(entry["seeds"], list(results["benchmark"]["ood"]))
    return results


def test_short_n_is_shown_counted_in_the_caption_and_warned(synthetic) -> None:
    results = fail_every_cell_of_seed(synthetic(seeds=3), "ft", 0)
    text = tables.markdown_summary(results)
    ft_row = next(line for line in text.splitlines() if line.startswith("| ft |"))
    lp_row = next(line for line in text.splitlines() if line.startswith("| lp |"))
    assert ft_row.count("(n=2)") == len(tables.columns(results))
    assert "(n=" not in lp_row  # one shared fit is all LP was configured for
    assert "over 3 seeds configured (seeds used, the others having failed: ft 2)" in text
    assert "ft: statistics over 2 of 3 seeds" in " ".join(tables.warnings(results))


def test_analysis_fixture_summarises_lp_as_one_fit(synthetic) -> None:
    lp = synthetic(seeds=3)["methods"]["lp"]["summary"]
    assert lp["id_test"]["n"] == 1 and math.isnan(lp["id_test"]["half_width"])


def with_id_test(results: dict[str, Any], stats_by_method: dict[str, tuple]) -> dict[str, Any]:
    results = copy.deepcopy(results)
    for method, (mean, half, n) in stats_by_method.items():
        results["methods"][method]["summary"]["id_test"] = {
            "mean": mean,
            "half_width": half,
            "n": n,
        }
    return results


def id_test_cells(results: dict[str, Any]) -> dict[str, str]:
    lines = tables.markdown_table(results).splitlines()[2:]
    return {line.split(" | ")[0].strip("| "): line.split(" | ")[2] for line in lines}


def test_bold_only_when_the_best_interval_overlaps_no_other(synthetic) -> None:
    resolved = with_id_test(
        synthetic(), {"lp": (0.9, math.nan, 1), "ft": (0.8, 0.02, 3), "lpft": (0.85, 0.01, 3)}
    )
    assert id_test_cells(resolved) == {"lp": "**90.0**", "ft": "80.0 ± 2.0", "lpft": "85.0 ± 1.0"}
    tied = with_id_test(
        synthetic(), {"lp": (0.9, math.nan, 1), "ft": (0.8, 0.02, 3), "lpft": (0.85, 0.06, 3)}
    )
    assert id_test_cells(tied) == {"lp": "*90.0*", "ft": "80.0 ± 2.0", "lpft": "*85.0 ± 6.0*"}
    one_seed_left = with_id_test(
        synthetic(), {"lp": (0.7, math.nan, 1), "ft": (0.95, math.nan, 1), "lpft": (0.8, 0.01, 3)}
    )
    # ft has one of its 3 seeds: its spread is unknown, so it cannot be a clear best.
    assert id_test_cells(one_seed_left)["ft"] == "*95.0 (n=1)*"


def test_selections_at_a_grid_edge_are_marked_and_warned(synthetic) -> None:
    results = synthetic(seeds=3)
    # The synthetic accuracy falls with the lr index and rises with the C index, so FT and
    # LP-FT pick their smallest lr on every seed and LP its largest C.
    notes = {row.method: row.notes for row in tables.rows(results)}
    assert "lr=0.001 at the lower edge of its grid (3/3 seeds)" in notes["ft"]
    assert "lr=1e-05 at the lower edge of its grid (3/3 seeds)" in notes["lpft"]
    assert "C=100 at the upper edge of its grid (1/1 seeds)" in notes["lp"]
    assert "lr: 0.001, 0.01, 0.1" in notes["ft"]
    warned = tables.warnings(results)
    assert any("ft: lr=0.001" in w and "extending it past 0.001" in w for w in warned)


def test_no_edge_mark_when_the_selection_is_inside_the_grid(synthetic) -> None:
    results = copy.deepcopy(synthetic(seeds=2))
    for seed in results["methods"]["ft"]["seeds"]:
        seed["selected"] = copy.deepcopy(seed["cells"][1]["candidates"][0])
    assert tables.grid_edges(results["methods"]["ft"]) == []


def paired_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    differences = np.asarray(a) - np.asarray(b)
    sem = differences.std(ddof=1) / math.sqrt(len(differences))
    low, high = stats.t.interval(0.9, len(differences) - 1, loc=differences.mean(), scale=sem)
    return float(differences.mean()), float((high - low) / 2)


def test_contrasts_are_paired_differences_over_seeds(synthetic) -> None:
    results = synthetic(seeds=4, rng_seed=7)
    found = {c.label: c for c in tables.contrasts(results)}
    assert set(found) == {"lp − ft", "lpft − lp", "lpft − ft"}

    def selected(method: str) -> list[float]:
        return [s["selected"]["id_test"] for s in results["methods"][method]["seeds"]]

    mean, half = paired_interval(selected("lpft"), selected("ft"))
    stat = found["lpft − ft"].values["id_test"]
    assert stat["mean"] == pytest_approx(mean) and stat["half_width"] == pytest_approx(half)
    lp_value = results["methods"]["lp"]["seeds"][0]["selected"]["id_test"]
    mean, half = paired_interval([lp_value] * 4, selected("ft"))
    assert found["lp − ft"].values["id_test"]["half_width"] == pytest_approx(half)
    assert found["lp − ft"].resolved("id_test") == (abs(mean) > half)
    assert "| lpft − ft |" in tables.markdown_summary(results)


def pytest_approx(value: float):
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def test_distortion_intervals_stop_at_zero(synthetic) -> None:
    stat = {"mean": 0.2, "half_width": 0.5, "n": 3}
    assert figures.nonnegative_error(stat) == [[0.2], [0.5]]
    assert figures.nonnegative_error({"mean": 1.0, "half_width": 0.5, "n": 3}) == [[0.5], [0.5]]
    measures = {"l2": stat, "cka": {"mean": 0.99, "half_width": 0.0, "n": 3}}
    assert report.format_distortion(measures) == "0.200 [0, 0.700] (CKA 0.990)"


def test_block_distortion_legend_draws_no_method_markers(synthetic) -> None:
    results = synthetic()
    styles = figures.method_styles(results["methods"])
    figure = figures.block_distortion_figure(results, styles, "t")
    handles = figure.legends[0].legend_handles
    method_markers = [h.get_marker() for h in handles if h.get_label() in ("ft", "lpft")]
    assert method_markers and all(m in ("", "None") for m in method_markers)


def test_report_marks_ties_and_is_readable_on_a_phone(synthetic, tmp_path: Path) -> None:
    tied = with_id_test(
        synthetic(), {"lp": (0.9, math.nan, 1), "ft": (0.8, 0.02, 3), "lpft": (0.85, 0.06, 3)}
    )
    run_dir = write(tmp_path / "run", tied)
    report.write_report([run_dir], tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "white-space: nowrap" in page
    assert "<td><em>90.0</em></td>" in page and "<td><em>85.0 ± 6.0</em></td>" in page
    assert "<strong>90.0</strong>" not in page
    assert "| *90.0* |" in markdown
    assert "Paired contrasts" in markdown and "| lpft − ft |" in markdown


def test_a_selection_at_a_bound_of_its_axis_is_not_an_edge(synthetic) -> None:
    results = copy.deepcopy(synthetic(seeds=3))
    assert tables.grid_edges(results["methods"]["ft"])
    # FT picks lr=0.001 on every seed: declared as the axis's lowest possible value, it is no
    # sign of a grid that stops too early (WiSE-FT's α = 0 or 1).
    results["methods"]["ft"]["axis_bounds"] = {"lr": [0.001, 1.0]}
    assert tables.grid_edges(results["methods"]["ft"]) == []
    assert not any(w.startswith("ft:") for w in tables.warnings(results))
