"""The paper-style table (methods x ID/OOD accuracy, mean and CI) in plain data and Markdown."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lpft.analysis.stats import mean_ci
from lpft.data.folder import skipped_note

PERCENT = 100.0
# The metric every split has (lpft.data.metrics.PRIMARY_METRIC); it fills the ID/OOD columns.
PRIMARY_METRIC = "accuracy"
PROTOCOL_NOTE = (
    "Hyperparameters and epochs selected on ID validation accuracy only; OOD sets used for "
    "evaluation only."
)
SHARED_FIT_NOTE = (
    " LP on un-augmented features is deterministic: one fit serves every seed, so it has no "
    "interval."
)
EMPHASIS_LEGEND = (
    " Bold: best mean of the column whose interval overlaps no other row's; italic: rows tied "
    "for best (intervals overlap the best mean's)."
)
# A cell's mark: the column's clear best, one of the rows tied for best, or nothing.
Mark = str | None
BEST, TIE = "best", "tie"


@dataclass
class Column:
    key: str
    title: str


@dataclass
class Row:
    """``values`` hold each column's {mean, half_width, n, expected}: ``expected`` is the number
    of distinct fits the run configured (seeds, or 1 for a fit shared by every seed)."""

    method: str
    notes: str
    values: dict[str, dict[str, float]]
    failed_cells: int


def split_title(split: str) -> str:
    return "ID test" if split == "id_test" else f"OOD {split}"


def columns(results: dict[str, Any]) -> list[Column]:
    """ID test, each OOD set (and their average), then every further metric a split carries
    (e.g. WILDS' ``worst_region``), titled by split and metric name."""
    cols = [Column("id_test", "ID test")]
    cols += [Column(f"ood:{name}", f"OOD {name}") for name in results["benchmark"]["ood"]]
    if len(results["benchmark"]["ood"]) > 1:
        cols.append(Column("ood_avg", "OOD avg"))
    for split, metrics in results["benchmark"].get("metrics", {}).items():
        cols += [
            Column(f"score:{split}:{metric}", f"{split_title(split)} {metric}")
            for metric in metrics
            if metric != PRIMARY_METRIC
        ]
    return cols


NO_VALUE = {"mean": float("nan"), "half_width": float("nan"), "n": 0}


def _stat(summary: dict[str, Any], key: str) -> dict[str, float]:
    if key.startswith("ood:"):
        return summary["ood"][key.removeprefix("ood:")]
    if key.startswith("score:"):
        split, metric = key.removeprefix("score:").split(":", 1)
        return summary.get("scores", {}).get(split, {}).get(metric, NO_VALUE)
    return summary[key]


def expected_fits(results: dict[str, Any], entry: dict[str, Any]) -> int:
    """Distinct fits a method was configured for: one per seed, or one shared by all."""
    return results["seeds"] if entry["seed_dependent"] else 1


def row_notes(entry: dict[str, Any]) -> str:
    """The setting column: BatchNorm mode, the grid searched, the hyperparameters selected on ID
    val, LP's solver and features, and any selection at the edge of its grid."""
    describe = entry["describe"]
    parts = [f"BN {describe.get('batchnorm', '-')}"]
    if describe.get("grid"):
        parts.append(describe["grid"])
    selected = selected_setting(entry)
    if selected:
        parts.append(f"selected {selected}")
    if describe.get("solver", "").startswith("official"):
        parts.append("official LP solver")
    if describe.get("train_features") == "augmented":
        parts.append("augmented LP features")
    parts += [edge.note() for edge in grid_edges(entry)]
    stopped = unconverged(entry)
    if stopped:
        parts.append("NOT CONVERGED: " + ", ".join(c.setting for c in stopped))
    return "; ".join(parts)


@dataclass
class Unconverged:
    """A candidate whose solver stopped before its own convergence test (gradient <= tol)
    passed: its accuracies are those of an unfinished fit."""

    setting: str
    grad_max: float
    tol: float


def unconverged(entry: dict[str, Any]) -> list[Unconverged]:
    """Every candidate of the method's distinct fits recorded with ``converged: false`` against
    a ``tol`` it was asked to reach (an exact solver's; a recipe with a fixed iteration count
    records no ``tol``), in grid order."""
    seeds = entry["seeds"] if entry.get("seed_dependent", True) else entry["seeds"][:1]
    return [
        Unconverged(
            format_setting(c["hparams"], entry.get("axes")), c.get("grad_max", math.nan), c["tol"]
        )
        for seed in seeds
        for cell in seed["cells"]
        for c in cell["candidates"]
        if c.get("converged") is False and "tol" in c
    ]


def selected_setting(entry: dict[str, Any]) -> str:
    """The hyperparameters each seed selected on ID val, in the method's axes, identical ones
    counted: ``lr=0.01 ×2, lr=0.003``. A seed-independent fit counts once."""
    seeds = entry["seeds"] if entry.get("seed_dependent", True) else entry["seeds"][:1]
    axes = entry.get("axes")
    counts = Counter(
        format_setting(seed["selected"]["hparams"], axes) for seed in seeds if seed["selected"]
    )
    return ", ".join(text + (f" ×{n}" if n > 1 else "") for text, n in counts.items())


def format_setting(hparams: dict[str, Any], axes: list[str] | None) -> str:
    names = [a for a in axes if a in hparams] if axes else list(hparams)
    return " ".join(f"{name}={format_value(hparams[name])}" for name in names)


def format_value(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"


def rows(results: dict[str, Any], summary_key: str = "summary") -> list[Row]:
    """Visible methods with their summary (``summary_key="oracle"``: the oracle selection)."""
    table = []
    for key, entry in results["methods"].items():
        if entry["hidden"] or summary_key not in entry:
            continue
        summary = entry[summary_key]
        expected = expected_fits(results, entry)
        table.append(
            Row(
                method=f"{key} (oracle)" if summary_key == ORACLE else key,
                notes=row_notes(entry),
                values={
                    c.key: {**_stat(summary, c.key), "expected": expected} for c in columns(results)
                },
                failed_cells=entry["summary"]["failed_cells"],
            )
        )
    return table


def interval(stat: dict[str, float]) -> tuple[float, float]:
    """The interval a statistic stands for. Without a half-width, a fit shared by every seed
    is a point, while a seed-dependent statistic left with one seed is unknown (everything)."""
    mean, half = stat["mean"], stat["half_width"]
    if math.isnan(half):
        if stat.get("expected", stat["n"]) <= 1:
            return mean, mean
        return -math.inf, math.inf
    return mean - half, mean + half


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    low_a, high_a = interval(a)
    low_b, high_b = interval(b)
    return low_a <= high_b and low_b <= high_a


def marks_per_column(table: list[Row], cols: list[Column]) -> dict[str, dict[str, Mark]]:
    """Per column, method -> mark: ``best`` when the best mean's interval overlaps no other
    row's, else ``tie`` for the best and every row whose interval overlaps it."""
    marks: dict[str, dict[str, Mark]] = {}
    for col in cols:
        scored = [r for r in table if not math.isnan(r.values[col.key]["mean"])]
        if not scored:
            continue
        best = max(scored, key=lambda r: r.values[col.key]["mean"])
        tied = [
            r.method
            for r in scored
            if r is not best and overlaps(r.values[col.key], best.values[col.key])
        ]
        if tied:
            marks[col.key] = {m: TIE for m in [best.method, *tied]}
        else:
            marks[col.key] = {best.method: BEST}
    return marks


def format_stat(stat: dict[str, float]) -> str:
    """``mean ± half`` in percent; ``(n=K)`` when fewer fits than configured succeeded."""
    mean, half = stat["mean"], stat["half_width"]
    if math.isnan(mean):
        return "—"
    text = (
        f"{mean * PERCENT:.1f}"
        if math.isnan(half)
        else f"{mean * PERCENT:.1f} ± {half * PERCENT:.1f}"
    )
    if stat["n"] < stat.get("expected", stat["n"]):
        text += f" (n={stat['n']})"
    return text


def caption(results: dict[str, Any], summary_key: str = "summary") -> str:
    seeds = results["seeds"]
    used = _seeds_used(results, summary_key)
    note = SHARED_FIT_NOTE if any(not e["seed_dependent"] for e in _visible(results)) else ""
    return (
        f"Accuracy (%) on {results['benchmark']['name']} with {results['model']}: mean ± "
        f"{results['confidence']:.0%} t-interval over {_seeds_phrase(seeds)}{used}. "
        + PROTOCOL_NOTE
        + note
        + _solver_note(results)
        + EMPHASIS_LEGEND
    )


def _solver_note(results: dict[str, Any]) -> str:
    """Which LP solver produced the LP rows (and the heads LP-FT started from)."""
    solvers = {
        f"{key}: {entry['describe']['solver']}"
        for key, entry in results["methods"].items()
        if "solver" in entry["describe"]
    }
    return f" LP solver ({'; '.join(sorted(solvers))})." if solvers else ""


def _visible(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in results["methods"].values() if not entry["hidden"]]


def selected_fits(entry: dict[str, Any]) -> int:
    """Distinct fits (seeds) with a selection: the others had every cell fail."""
    distinct = entry["seeds"] if entry["seed_dependent"] else entry["seeds"][:1]
    return sum(1 for seed in distinct if seed["selected"])


def _seeds_used(results: dict[str, Any], summary_key: str) -> str:
    """Which methods were left with fewer seeds than configured, and how many they used."""
    short = [
        f"{key} {selected_fits(entry)}"
        for key, entry in results["methods"].items()
        if not entry["hidden"]
        and summary_key in entry
        and selected_fits(entry) < expected_fits(results, entry)
    ]
    if not short:
        return ""
    return f" configured (seeds used, the others having failed: {', '.join(short)})"


def formatted_rows(
    results: dict[str, Any],
    emphasise: Callable[[str, str], str],
    failures: Callable[[int], str],
    summary_key: str = "summary",
) -> list[tuple[str, str, list[str]]]:
    """(method, setting, cells) per row, marked cells passed through ``emphasise(text, mark)``
    and a non-zero failed-cell count appended to the setting by ``failures``."""
    cols = columns(results)
    table = rows(results, summary_key)
    marks = marks_per_column(table, cols)
    formatted = []
    for row in table:
        cells = []
        for col in cols:
            text = format_stat(row.values[col.key])
            mark = marks.get(col.key, {}).get(row.method)
            cells.append(emphasise(text, mark) if mark else text)
        notes = row.notes + (failures(row.failed_cells) if row.failed_cells else "")
        formatted.append((row.method, notes, cells))
    return formatted


def markdown_emphasis(text: str, mark: str) -> str:
    return f"**{text}**" if mark == BEST else f"*{text}*"


def markdown_table(results: dict[str, Any], summary_key: str = "summary") -> str:
    header = "| method | setting | " + " | ".join(c.title for c in columns(results)) + " |"
    rule = "|---|---|" + "---|" * len(columns(results))
    lines = [header, rule]
    for method, notes, cells in formatted_rows(
        results, markdown_emphasis, lambda n: f", {n} failed cell(s)", summary_key
    ):
        lines.append(f"| {method} | {notes} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_contrasts(results: dict[str, Any]) -> str:
    cols = columns(results)
    header = "| contrast | " + " | ".join(c.title for c in cols) + " |"
    lines = [header, "|---|" + "---|" * len(cols)]
    for contrast in contrasts(results):
        cells = [
            f"**{text}**" if contrast.resolved(col.key) else text
            for col in cols
            for text in [format_difference(contrast.values[col.key])]
        ]
        lines.append(f"| {contrast.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_summary(results: dict[str, Any]) -> str:
    parts = [
        f"# lpft results: {results['benchmark']['name']}",
        caption(results),
        markdown_table(results),
    ]
    if contrasts(results):
        parts += [contrast_caption(results), markdown_contrasts(results)]
    if has_oracle(results):
        parts += [
            "## Oracle (selected on OOD validation; not a protocol result)",
            oracle_caption(results),
            markdown_table(results, ORACLE),
        ]
    notes = warnings(results)
    if notes:
        parts.append("\n".join(f"- {note}" for note in notes))
    return "\n\n".join(parts) + "\n"


# --- grid edges ----------------------------------------------------------------------------------


@dataclass
class GridEdge:
    """Seeds whose selected ``axis`` value is the lowest or highest value of its grid."""

    axis: str
    side: str
    value: float
    count: int
    total: int

    def note(self) -> str:
        return (
            f"{self.axis}={self.value:g} at the {self.side} edge of its grid "
            f"({self.count}/{self.total} seeds)"
        )


def axis_grid(entry: dict[str, Any], axis: str) -> list[float]:
    """Every value of ``axis`` the method tried (failed cells included), ascending."""
    values = set()
    for seed in entry["seeds"]:
        for cell in seed["cells"]:
            if axis in cell["hparams"]:
                values.add(cell["hparams"][axis])
            values.update(c["hparams"][axis] for c in cell["candidates"] if axis in c["hparams"])
    return sorted(values)


def grid_edges(entry: dict[str, Any]) -> list[GridEdge]:
    """Selections at the lowest or highest value of a grid of two or more values, unless that
    value is a bound the axis cannot go past (``axis_bounds``)."""
    distinct = entry["seeds"] if entry["seed_dependent"] else entry["seeds"][:1]
    chosen = [s["selected"] for s in distinct if s["selected"]]
    bounds = entry.get("axis_bounds", {})
    edges = []
    for axis in entry.get("axes", []):
        grid = axis_grid(entry, axis)
        if len(grid) < 2 or any(isinstance(v, str) for v in grid):
            continue
        for side, value in (("lower", grid[0]), ("upper", grid[-1])):
            if axis in bounds and value == bounds[axis][0 if side == "lower" else 1]:
                continue
            count = sum(1 for c in chosen if c["hparams"].get(axis) == value)
            if count:
                edges.append(GridEdge(axis, side, value, count, len(chosen)))
    return edges


def warnings(results: dict[str, Any]) -> list[str]:
    """What a reader of the table must not miss: data files left out, seeds that dropped out,
    selections at the edge of their grid, candidates whose solver did not converge."""
    notes = skipped_data(results.get("benchmark", {}))
    for key, entry in results["methods"].items():
        if entry["hidden"]:
            continue
        n, expected = selected_fits(entry), expected_fits(results, entry)
        if n < expected:
            notes.append(
                f"{key}: statistics over {n} of {expected} seeds (every cell of the others failed)"
            )
        for edge in grid_edges(entry):
            notes.append(
                f"{key}: {edge.note()}; the best value may lie outside the grid, consider "
                f"extending it past {edge.value:g}"
            )
        notes += [
            f"{key}: {c.setting} did not converge (max |gradient| {c.grad_max:.2g} > tol "
            f"{c.tol:g}); its accuracies are those of an unfinished fit: raise max_iter"
            for c in unconverged(entry)
        ]
    return notes


def skipped_data(benchmark: dict[str, Any]) -> list[str]:
    """Files of the benchmark's data that the run did not read, and why."""
    notes = []
    if benchmark.get("skipped_bad_images"):
        notes.append(
            f"{benchmark['skipped_bad_images']} unreadable images skipped (--skip-bad-images), "
            f"e.g. {benchmark['bad_images'][0]}"
        )
    skipped = benchmark.get("info", {}).get("skipped_files")
    if skipped:
        notes.append(skipped_note(skipped))
    return notes


# --- paired contrasts ----------------------------------------------------------------------------

REFERENCE_METHOD = "ft"


@dataclass
class Contrast:
    """``minuend - subtrahend`` per seed, summarised: {mean, half_width, n} per column."""

    minuend: str
    subtrahend: str
    values: dict[str, dict[str, float]]

    @property
    def label(self) -> str:
        return f"{self.minuend} − {self.subtrahend}"

    def resolved(self, column: str) -> bool:
        """The interval of the difference excludes zero."""
        stat = self.values[column]
        if math.isnan(stat["half_width"]):
            return False
        return abs(stat["mean"]) > stat["half_width"]


def contrast_pairs(keys: list[str]) -> list[tuple[str, str]]:
    """Every pair of methods once: against ``ft`` when one of them is ft, else later − earlier."""
    pairs = []
    for i, first in enumerate(keys):
        for second in keys[i + 1 :]:
            if second == REFERENCE_METHOD:
                pairs.append((first, second))
            else:
                pairs.append((second, first))
    return pairs


def seed_values(results: dict[str, Any], entry: dict[str, Any], column: str) -> list[float | None]:
    """Each seed's selected value in ``column`` (None where the seed has no evaluated selection);
    a fit shared by every seed repeats under each."""
    values = []
    for seed in entry["seeds"]:
        chosen = seed["selected"]
        if not chosen or "id_test" not in chosen:
            values.append(None)
        elif column == "id_test":
            values.append(chosen["id_test"])
        elif column == "ood_avg":
            ood = list(chosen["ood"].values())
            values.append(sum(ood) / len(ood) if ood else None)
        elif column.startswith("score:"):
            split, metric = column.removeprefix("score:").split(":", 1)
            values.append(chosen.get("scores", {}).get(split, {}).get(metric))
        else:
            values.append(chosen["ood"][column.removeprefix("ood:")])
    return values


def contrasts(results: dict[str, Any]) -> list[Contrast]:
    """Paired differences between the visible methods over the seeds both completed."""
    methods = {k: e for k, e in results["methods"].items() if not e["hidden"]}
    found = []
    for minuend, subtrahend in contrast_pairs(list(methods)):
        a, b = methods[minuend], methods[subtrahend]
        values = {}
        for col in columns(results):
            pairs = zip(
                seed_values(results, a, col.key), seed_values(results, b, col.key), strict=False
            )
            differences = [x - y for x, y in pairs if x is not None and y is not None]
            if not (a["seed_dependent"] or b["seed_dependent"]):
                differences = differences[:1]
            values[col.key] = mean_ci(differences, results["confidence"])
        found.append(Contrast(minuend, subtrahend, values))
    return found


def format_difference(stat: dict[str, float]) -> str:
    mean, half = stat["mean"], stat["half_width"]
    if math.isnan(mean):
        return "—"
    text = f"{mean * PERCENT:+.1f}"
    return text if math.isnan(half) else f"{text} ± {half * PERCENT:.1f}"


def contrast_caption(results: dict[str, Any]) -> str:
    return (
        "Paired differences (percentage points): per seed, one method's selected accuracy minus "
        f"the other's, then mean ± {results['confidence']:.0%} t-interval over the seeds both "
        "completed (a fit shared by every seed enters each seed). Bold: the interval excludes "
        "0, so the difference is resolved at this level; otherwise the data cannot order the two."
    )


# --- oracle rows ---------------------------------------------------------------------------------

ORACLE = "oracle"


def has_oracle(results: dict[str, Any]) -> bool:
    return any(ORACLE in entry for entry in _visible(results))


def oracle_caption(results: dict[str, Any]) -> str:
    return (
        "Oracle rows: each seed's candidate (C or learning rate; epochs stay chosen on ID "
        "validation) with the best mean accuracy over the OOD validation sets. OOD validation "
        "is not available under the protocol, so these rows bound what selection could gain and "
        f"are not comparable results. Mean ± {results['confidence']:.0%} t-interval."
        + EMPHASIS_LEGEND
    )


@dataclass
class ColumnGroup:
    """The columns of one run (its benchmark's ID test and OOD sets) under the run's label."""

    label: str
    columns: list[Column]


@dataclass
class MultiRunTable:
    """Methods x (run, column); ``values`` and ``marks`` are keyed by ``group_key(label, col)``."""

    groups: list[ColumnGroup]
    rows: list[Row]
    marks: dict[str, dict[str, Mark]]


def group_key(label: str, column: Column) -> str:
    return f"{label}/{column.key}"


def multi_run_table(
    runs: list[tuple[str, dict[str, Any]]], summary_key: str = "summary"
) -> MultiRunTable:
    """One row per method over several labelled runs; a method absent from a run shows '—'."""
    groups = [ColumnGroup(label, columns(results)) for label, results in runs]
    per_run = {
        label: {row.method: row for row in rows(results, summary_key)} for label, results in runs
    }
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
    return MultiRunTable(groups, merged, marks_per_column(merged, keyed))


def _merged_notes(present: dict[str, Row]) -> str:
    distinct = set(row.notes for row in present.values())
    if len(distinct) == 1:
        return distinct.pop()
    return "; ".join(f"{label}: {row.notes}" for label, row in present.items())


def multi_run_caption(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """States the interval, the seeds and backbone of each run and the selection rule."""
    legend = (
        " Setting: BatchNorm mode while training, the grid searched, the hyperparameters selected"
        " on ID val (×n: chosen by n seeds), and any selection at the edge of its grid (seeds that"
        " chose it / seeds)."
    )
    if len(runs) == 1:
        return caption(runs[0][1]) + legend
    details = "; ".join(
        f"{label}: {results['model']}, {_seeds_phrase(results['seeds'])}" for label, results in runs
    )
    levels = sorted({f"{results['confidence']:.0%}" for _, results in runs})
    return (
        f"Accuracy (%): mean ± {' / '.join(levels)} t-interval over seeds ({details}). "
        + PROTOCOL_NOTE
        + EMPHASIS_LEGEND
        + legend
    )


def _seeds_phrase(seeds: int) -> str:
    return f"{seeds} seed{'s' if seeds != 1 else ''}"


def multi_run_cells(table: MultiRunTable, row: Row) -> list[tuple[str, Mark]]:
    """Formatted statistic and its mark (``best``, ``tie`` or None), in column order."""
    return [
        (format_stat(row.values[key]), table.marks.get(key, {}).get(row.method))
        for group in table.groups
        for key in (group_key(group.label, col) for col in group.columns)
    ]


def multi_run_notes(row: Row) -> str:
    return row.notes + (f", {row.failed_cells} failed cell(s)" if row.failed_cells else "")
