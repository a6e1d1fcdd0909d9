"""The paper-style table (methods x ID/OOD accuracy, mean and CI) in plain data and Markdown."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PERCENT = 100.0
PROTOCOL_NOTE = (
    "Hyperparameters and epochs selected on ID validation accuracy only; OOD sets used for "
    "evaluation only. LP is deterministic given the features: one fit serves every seed, so it "
    "has no interval."
)


@dataclass
class Column:
    key: str
    title: str


@dataclass
class Row:
    method: str
    notes: str
    values: dict[str, dict[str, float]]
    failed_cells: int


def columns(results: dict[str, Any]) -> list[Column]:
    cols = [Column("id_test", "ID test")]
    cols += [Column(f"ood:{name}", f"OOD {name}") for name in results["benchmark"]["ood"]]
    if len(results["benchmark"]["ood"]) > 1:
        cols.append(Column("ood_avg", "OOD avg"))
    return cols


def _stat(summary: dict[str, Any], key: str) -> dict[str, float]:
    if key.startswith("ood:"):
        return summary["ood"][key.removeprefix("ood:")]
    return summary[key]


def rows(results: dict[str, Any]) -> list[Row]:
    table = []
    for key, entry in results["methods"].items():
        if entry["hidden"]:
            continue
        notes = f"BN {entry['describe'].get('batchnorm', '-')}"
        summary = entry["summary"]
        table.append(
            Row(
                method=key,
                notes=notes,
                values={c.key: _stat(summary, c.key) for c in columns(results)},
                failed_cells=summary["failed_cells"],
            )
        )
    return table


def best_per_column(table: list[Row], cols: list[Column]) -> dict[str, str]:
    best = {}
    for col in cols:
        scored = [(r.values[col.key]["mean"], r.method) for r in table]
        scored = [s for s in scored if not math.isnan(s[0])]
        if scored:
            best[col.key] = max(scored)[1]
    return best


def format_stat(stat: dict[str, float]) -> str:
    mean, half = stat["mean"], stat["half_width"]
    if math.isnan(mean):
        return "—"
    if math.isnan(half):
        return f"{mean * PERCENT:.1f}"
    return f"{mean * PERCENT:.1f} ± {half * PERCENT:.1f}"


def caption(results: dict[str, Any]) -> str:
    seeds = results["seeds"]
    return (
        f"Accuracy (%) on {results['benchmark']['name']} with {results['model']}: mean ± "
        f"{results['confidence']:.0%} t-interval over {seeds} seed{'s' if seeds != 1 else ''}. "
        + PROTOCOL_NOTE
    )


def formatted_rows(
    results: dict[str, Any],
    emphasise: Callable[[str], str],
    failures: Callable[[int], str],
) -> list[tuple[str, str, list[str]]]:
    """(method, setting, cells) per row, the best cell per column passed through ``emphasise``
    and a non-zero failed-cell count appended to the setting by ``failures``."""
    cols = columns(results)
    table = rows(results)
    best = best_per_column(table, cols)
    formatted = []
    for row in table:
        cells = [
            emphasise(text) if best.get(col.key) == row.method else text
            for col in cols
            for text in [format_stat(row.values[col.key])]
        ]
        notes = row.notes + (failures(row.failed_cells) if row.failed_cells else "")
        formatted.append((row.method, notes, cells))
    return formatted


def markdown_table(results: dict[str, Any]) -> str:
    header = "| method | setting | " + " | ".join(c.title for c in columns(results)) + " |"
    rule = "|---|---|" + "---|" * len(columns(results))
    lines = [header, rule]
    for method, notes, cells in formatted_rows(
        results, lambda text: f"**{text}**", lambda n: f", {n} failed cell(s)"
    ):
        lines.append(f"| {method} | {notes} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_summary(results: dict[str, Any]) -> str:
    return (
        f"# lpft results: {results['benchmark']['name']}\n\n"
        f"{caption(results)}\n\n{markdown_table(results)}\n"
    )


@dataclass
class ColumnGroup:
    """The columns of one run (its benchmark's ID test and OOD sets) under the run's label."""

    label: str
    columns: list[Column]


@dataclass
class MultiRunTable:
    """Methods x (run, column); ``values`` and ``best`` are keyed by ``group_key(label, col)``."""

    groups: list[ColumnGroup]
    rows: list[Row]
    best: dict[str, str]


NO_VALUE = {"mean": float("nan"), "half_width": float("nan"), "n": 0}


def group_key(label: str, column: Column) -> str:
    return f"{label}/{column.key}"


def multi_run_table(runs: list[tuple[str, dict[str, Any]]]) -> MultiRunTable:
    """One row per method over several labelled runs; a method absent from a run shows '—'."""
    groups = [ColumnGroup(label, columns(results)) for label, results in runs]
    per_run = {label: {row.method: row for row in rows(results)} for label, results in runs}
    methods = list(dict.fromkeys(m for table in per_run.values() for m in table))
    merged = []
    for method in methods:
        present = {label: table[method] for label, table in per_run.items() if method in table}
        values = {
            group_key(group.label, col): (
                present[group.label].values[col.key] if group.label in present else NO_VALUE
            )
            for group in groups
            for col in group.columns
        }
        merged.append(
            Row(
                method=method,
                notes=_merged_notes(present),
                values=values,
                failed_cells=sum(row.failed_cells for row in present.values()),
            )
        )
    keyed = [Column(group_key(g.label, c), c.title) for g in groups for c in g.columns]
    return MultiRunTable(groups, merged, best_per_column(merged, keyed))


def _merged_notes(present: dict[str, Row]) -> str:
    distinct = set(row.notes for row in present.values())
    if len(distinct) == 1:
        return distinct.pop()
    return "; ".join(f"{label}: {row.notes}" for label, row in present.items())


def multi_run_caption(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """States the interval, the seeds and backbone of each run and the selection rule."""
    legend = " Setting: BatchNorm mode while training. Bold: best mean per column."
    if len(runs) == 1:
        return caption(runs[0][1]) + legend
    details = "; ".join(
        f"{label}: {results['model']}, {_seeds_phrase(results['seeds'])}" for label, results in runs
    )
    levels = sorted({f"{results['confidence']:.0%}" for _, results in runs})
    return (
        f"Accuracy (%): mean ± {' / '.join(levels)} t-interval over seeds ({details}). "
        + PROTOCOL_NOTE
        + legend
    )


def _seeds_phrase(seeds: int) -> str:
    return f"{seeds} seed{'s' if seeds != 1 else ''}"


def multi_run_cells(table: MultiRunTable, row: Row) -> list[tuple[str, bool]]:
    """Formatted statistic and whether it is the column's best, in column order."""
    return [
        (format_stat(row.values[key]), table.best.get(key) == row.method)
        for group in table.groups
        for key in (group_key(group.label, col) for col in group.columns)
    ]


def multi_run_notes(row: Row) -> str:
    return row.notes + (f", {row.failed_cells} failed cell(s)" if row.failed_cells else "")
