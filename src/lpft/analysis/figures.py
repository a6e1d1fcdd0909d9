"""PNG figures of one run's ``results.json`` (matplotlib ``Figure`` objects, no pyplot state).

Colour always encodes the method (a fixed palette shared by every figure of a report); the
split (ID test, each OOD set) is encoded by line style, marker or hatch. Accuracies are drawn
in percent. Every figure function returns ``None`` when the run holds nothing to draw.

The figures follow the sweep axes each method declares (``methods[key]["axes"]``, main axis
first), never literal names: methods whose main axis is the learning rate share the lr-sweep,
those swept over C the LP path, any other axis gets its own panels; a method with a second axis
gets one curve per value of it, shaded from light to dark.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lpft.analysis.stats import mean_ci

PERCENT = 100.0
DPI = 120
PANEL_SIZE = 3.3
SINGLE_PANEL_SIZE = 4.2
MAX_COLUMNS = 3
LEGEND_HEIGHT = 0.9
MIN_WIDTH = 6.0
LEGEND_COLUMNS = 3
BASE_STYLES = {"lp": ("tab:blue", "o"), "ft": ("tab:red", "s"), "lpft": ("tab:green", "^")}
EXTRA_COLOURS = ("tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan", "tab:olive")
EXTRA_MARKERS = ("D", "v", "P", "X", "<", ">")
SPLIT_LINESTYLES = ("-", "--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (3, 1, 1, 1)), (0, (6, 3)))
SPLIT_MARKERS = ("o", "s", "^", "D", "v", "P")
SPLIT_HATCHES = ("", "//", "..", "xx", "\\\\", "oo")
SELECTED_EDGE = "black"
FADED_ALPHA = 0.35
TITLE_CHARS_PER_INCH = 10
DISTORTION_LOG_RATIO = 30


@dataclass(frozen=True)
class MethodStyle:
    colour: str
    marker: str


@dataclass(frozen=True)
class SplitStyle:
    linestyle: Any
    marker: str
    hatch: str


ID_VAL_STYLE = SplitStyle(":", ".", "")


def method_styles(keys: Iterable[str]) -> dict[str, MethodStyle]:
    """lp / ft / lpft keep fixed colours; other keys get the next free colour in sorted order."""
    styles = {key: MethodStyle(*style) for key, style in BASE_STYLES.items()}
    extras = sorted(set(keys) - set(BASE_STYLES))
    for index, key in enumerate(extras):
        styles[key] = MethodStyle(
            EXTRA_COLOURS[index % len(EXTRA_COLOURS)], EXTRA_MARKERS[index % len(EXTRA_MARKERS)]
        )
    return styles


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


# --- reading results.json ------------------------------------------------------------------------


def visible_methods(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Methods the user asked for (not those that only ran because another needs them)."""
    return [(key, entry) for key, entry in results["methods"].items() if not entry["hidden"]]


def distinct_seeds(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A seed-independent method (LP) repeats the same cells under every seed: keep one."""
    return entry["seeds"] if entry["seed_dependent"] else entry["seeds"][:1]


def ood_names(results: dict[str, Any]) -> list[str]:
    return list(results["benchmark"]["ood"])


def split_title(split: str) -> str:
    return {"id_val": "ID val", "id_test": "ID test"}.get(split, f"OOD {split}")


def accuracy(candidate: dict[str, Any], split: str) -> float | None:
    """Accuracy in percent, or None while the candidate is not evaluated on ``split`` yet."""
    if split in ("id_val", "id_test"):
        value = candidate.get(split)
    else:
        value = candidate.get("ood", {}).get(split)
    return None if value is None else value * PERCENT


def is_selected(candidate: dict[str, Any], selected: dict[str, Any] | None) -> bool:
    return selected is not None and candidate["hparams"] == selected["hparams"]


def candidates_of(seed: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for cell in seed["cells"]:
        if cell["status"] == "done":
            yield from cell["candidates"]


def axes_of(entry: dict[str, Any]) -> list[str]:
    """The method's sweep axes, main first (inferred from the hyperparameters in results
    written before ``axes`` was recorded)."""
    if entry.get("axes") is not None:
        return list(entry["axes"])
    return [name for name in ("lr", "C") if has_hparam(entry, name)]


def main_axis(entry: dict[str, Any]) -> str | None:
    axes = axes_of(entry)
    return axes[0] if axes else None


def second_axis(entry: dict[str, Any]) -> str | None:
    axes = axes_of(entry)
    return axes[1] if len(axes) > 1 else None


def second_axis_values(entry: dict[str, Any]) -> list[Any]:
    """Values of the second axis over the candidates ([None] for a one-axis method), sorted."""
    axis = second_axis(entry)
    if axis is None:
        return [None]
    found = {
        c["hparams"][axis]
        for seed in distinct_seeds(entry)
        for c in candidates_of(seed)
        if axis in c["hparams"]
    }
    return sorted(found, key=axis_sort_key)


def axis_sort_key(value: Any) -> tuple[int, Any]:
    """Numbers in order, then names in order."""
    return (1, str(value)) if isinstance(value, str) else (0, value)


def axis_label(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def has_hparam(entry: dict[str, Any], name: str) -> bool:
    """Whether the method's grid (cells, or candidates within a cell) varies ``name``."""
    return any(
        name in cell["hparams"] or any(name in c["hparams"] for c in cell["candidates"])
        for seed in entry["seeds"]
        for cell in seed["cells"]
    )


def curve_over(
    entry: dict[str, Any],
    hparam: str,
    split: str,
    confidence: float,
    where: dict[str, Any] | None = None,
) -> list[tuple[Any, dict[str, float]]]:
    """Per hyperparameter value: mean and t-interval over seeds of the accuracy on ``split``,
    of the candidates whose other hyperparameters match ``where`` (e.g. one value of a second
    axis)."""
    values: dict[Any, list[float]] = {}
    for seed in distinct_seeds(entry):
        for candidate in candidates_of(seed):
            value = accuracy(candidate, split)
            hparams = candidate["hparams"]
            if value is None or hparam not in hparams:
                continue
            if where and any(hparams.get(k) != v for k, v in where.items()):
                continue
            values.setdefault(hparams[hparam], []).append(value)
    return [(x, mean_ci(values[x], confidence)) for x in sorted(values, key=axis_sort_key)]


def second_axis_filter(entry: dict[str, Any], value: Any) -> dict[str, Any] | None:
    axis = second_axis(entry)
    return None if axis is None else {axis: value}


def curve_strength(rank: int, count: int) -> float:
    """Colour strength of the ``rank``-th of ``count`` curves of one method: 1 when alone."""
    return 1.0 if count == 1 else 0.35 + 0.65 * (rank + 1) / count


def splits_with_data(
    results: dict[str, Any], methods: list[tuple[str, dict[str, Any]]], hparam: str
) -> list[str]:
    """ID val, ID test and the OOD sets, less those no candidate is evaluated on yet."""
    return [
        split
        for split in ["id_val", "id_test", *ood_names(results)]
        if any(curve_over(entry, hparam, split, results["confidence"]) for _, entry in methods)
    ]


def failed_values(entry: dict[str, Any], hparam: str) -> list[float]:
    return sorted(
        {
            cell["hparams"][hparam]
            for seed in distinct_seeds(entry)
            for cell in seed["cells"]
            if cell["status"] == "failed" and hparam in cell["hparams"]
        }
    )


def selected_candidates(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [seed["selected"] for seed in distinct_seeds(entry) if seed["selected"]]


# --- layout helpers ------------------------------------------------------------------------------


def panel_grid(
    count: int, title: str, panel_width: float = PANEL_SIZE, panel_height: float = PANEL_SIZE
) -> tuple[Figure, list]:
    """A constrained-layout figure with ``count`` panels in balanced rows of at most three and
    room for a legend below; unused panels are hidden."""
    nrows = math.ceil(count / MAX_COLUMNS)
    ncols = math.ceil(count / nrows)
    figure = Figure(
        figsize=(max(MIN_WIDTH, panel_width * ncols), panel_height * nrows + LEGEND_HEIGHT),
        dpi=DPI,
        layout="constrained",
    )
    axes = list(figure.subplots(nrows, ncols, squeeze=False).flat)
    for spare in axes[count:]:
        spare.set_visible(False)
    set_title(figure, title)
    return figure, axes[:count]


def set_title(figure: Figure, title: str) -> None:
    """Figure title wrapped to the figure's width so that it is never clipped."""
    width = figure.get_figwidth()
    figure.suptitle(textwrap.fill(title, width=int(width * TITLE_CHARS_PER_INCH)))


def significant(value: float) -> str:
    """Three significant digits, trailing zeros kept (2.80, 0.0137)."""
    return f"{value:#.3g}".rstrip(".")


def bottom_legend(figure: Figure, handles: list[Any]) -> None:
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), LEGEND_COLUMNS),
        fontsize=8,
        frameon=False,
    )


def method_handles(
    keys: list[str], styles: dict[str, MethodStyle], with_marker: bool = True
) -> list[Line2D]:
    """Legend entries of the methods; without their marker where the plot's markers encode
    something else (the split)."""
    return [
        Line2D(
            [], [], color=styles[k].colour, marker=styles[k].marker if with_marker else "", label=k
        )
        for k in keys
    ]


def split_style(results: dict[str, Any], split: str) -> SplitStyle:
    """ID test and each OOD set keep the same style in every figure; ID val has its own."""
    if split == "id_val":
        return ID_VAL_STYLE
    index = ["id_test", *ood_names(results)].index(split)
    return SplitStyle(
        SPLIT_LINESTYLES[index % len(SPLIT_LINESTYLES)],
        SPLIT_MARKERS[index % len(SPLIT_MARKERS)],
        SPLIT_HATCHES[index % len(SPLIT_HATCHES)],
    )


def split_handles(results: dict[str, Any], splits: list[str]) -> list[Line2D]:
    return [
        Line2D(
            [],
            [],
            color="0.3",
            linestyle=split_style(results, split).linestyle,
            marker=split_style(results, split).marker,
            label=split_title(split),
        )
        for split in splits
    ]


def selected_handle() -> Line2D:
    return Line2D(
        [],
        [],
        linestyle="",
        marker="o",
        markersize=8,
        markerfacecolor="0.6",
        markeredgecolor=SELECTED_EDGE,
        label="selected on ID val (per seed)",
    )


def clip_to_percent_range(ax: Axes) -> None:
    """Wide intervals over few seeds reach past 0 or 100%; accuracy cannot."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, PERCENT))


def marker_style(style: MethodStyle, selected: bool) -> dict[str, Any]:
    """Selected candidates large with a black edge, the others small and faded."""
    if selected:
        return {
            "s": 64,
            "color": style.colour,
            "marker": style.marker,
            "edgecolors": SELECTED_EDGE,
            "linewidths": 1.2,
            "zorder": 3,
        }
    return {
        "s": 16,
        "color": style.colour,
        "marker": style.marker,
        "alpha": FADED_ALPHA,
        "linewidths": 0,
        "zorder": 2,
    }


def shade(colour: str, strength: float) -> tuple[float, float, float]:
    """``colour`` mixed with white; strength 1 is the colour itself."""
    return tuple(1 - strength * (1 - c) for c in to_rgb(colour))


# --- ID vs OOD scatter ---------------------------------------------------------------------------


@dataclass
class Point:
    method: str
    candidate: dict[str, Any]
    selected: bool


def candidate_points(results: dict[str, Any]) -> list[Point]:
    return [
        Point(key, candidate, is_selected(candidate, seed["selected"]))
        for key, entry in visible_methods(results)
        for seed in distinct_seeds(entry)
        for candidate in candidates_of(seed)
    ]


def id_vs_ood_figure(
    results: dict[str, Any], styles: dict[str, MethodStyle], title: str
) -> Figure | None:
    """ID test vs OOD accuracy of every candidate, one panel per OOD set, with the y = x line."""
    points = [p for p in candidate_points(results) if accuracy(p.candidate, "id_test") is not None]
    names = ood_names(results)
    if not points or not names:
        return None
    size = PANEL_SIZE if len(names) > 1 else SINGLE_PANEL_SIZE
    figure, axes = panel_grid(
        len(names), f"{title}: ID vs OOD accuracy of every candidate", size, size
    )
    curves = curve_methods(results)
    for ax, name in zip(axes, names, strict=True):
        draw_id_vs_ood(ax, points, name, styles)
        for key, entry in curves:
            draw_scatter_curve(ax, results, entry, name, styles[key])
    methods = list(dict.fromkeys(p.method for p in points))
    faded = Line2D(
        [],
        [],
        linestyle="",
        marker="o",
        markersize=4,
        color="0.6",
        alpha=FADED_ALPHA,
        label=f"not selected (other {' / '.join(scatter_axes(results))} / seed)",
    )
    diagonal = Line2D([], [], color="0.5", linestyle="--", label="y = x")
    lines = [
        Line2D([], [], color=styles[key].colour, label=f"{key}: {entry['curve']} path (mean)")
        for key, entry in curves
    ]
    bottom_legend(
        figure, [*method_handles(methods, styles), selected_handle(), faded, diagonal, *lines]
    )
    return figure


def scatter_axes(results: dict[str, Any]) -> list[str]:
    """Every visible method's axes, the learning rate and C first (as the legend always said)."""
    found = {axis for _, entry in visible_methods(results) for axis in axes_of(entry)}
    return sorted(found, key=lambda axis: ({"lr": 0, "C": 1}.get(axis, 2), axis))


def curve_methods(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Visible methods that declare a curve axis (e.g. WiSE-FT's alpha)."""
    return [(k, e) for k, e in visible_methods(results) if e.get("curve")]


def draw_scatter_curve(
    ax: Axes, results: dict[str, Any], entry: dict[str, Any], name: str, style: MethodStyle
) -> None:
    """The method's path in the (ID test, OOD) plane: mean over seeds at each value of its
    curve axis, in axis order."""
    axis = entry["curve"]
    confidence = results["confidence"]
    id_test = dict(curve_over(entry, axis, "id_test", confidence))
    ood = dict(curve_over(entry, axis, name, confidence))
    shared = [x for x in id_test if x in ood]
    if len(shared) > 1:
        ax.plot(
            [id_test[x]["mean"] for x in shared],
            [ood[x]["mean"] for x in shared],
            color=style.colour,
            linewidth=1.2,
            zorder=2.5,
        )


def draw_id_vs_ood(
    ax: Axes, points: list[Point], name: str, styles: dict[str, MethodStyle]
) -> None:
    pairs = [(p, accuracy(p.candidate, "id_test"), accuracy(p.candidate, name)) for p in points]
    pairs = [(p, x, y) for p, x, y in pairs if y is not None]
    if not pairs:
        ax.text(0.5, 0.5, "not evaluated yet", ha="center", va="center", transform=ax.transAxes)
        return
    for method in dict.fromkeys(p.method for p, _, _ in pairs):
        for selected in (False, True):
            group = [(x, y) for p, x, y in pairs if p.method == method and p.selected == selected]
            if group:
                xs, ys = zip(*group, strict=True)
                ax.scatter(xs, ys, **marker_style(styles[method], selected))
    xs = [x for _, x, _ in pairs]
    ys = [y for _, _, y in pairs]
    low, high = min(xs + ys), max(xs + ys)
    pad = max(0.05 * (high - low), 1.0)
    limits = (max(low - pad, 0.0), min(high + pad, PERCENT))
    ax.plot(limits, limits, color="0.5", linestyle="--", linewidth=1, zorder=1)
    ax.set_xlim(limits)
    ax.set_ylim(limits)
    ax.set_aspect("equal")
    ax.set_xlabel("ID test accuracy (%)")
    ax.set_ylabel(f"OOD {name} accuracy (%)")
    ax.set_title(f"OOD: {name}", fontsize=10)
    ax.grid(alpha=0.3)


# --- accuracy vs learning rate -------------------------------------------------------------------


def lr_sweep_figure(
    results: dict[str, Any], styles: dict[str, MethodStyle], title: str
) -> Figure | None:
    """ID val, ID test and OOD accuracy against the learning rate, mean and CI over seeds;
    each seed's selected learning rate is a black-edged marker, a failed one a cross."""
    methods = [(k, e) for k, e in visible_methods(results) if main_axis(e) == "lr"]
    if not methods:
        return None
    confidence = results["confidence"]
    splits = splits_with_data(results, methods, "lr")
    figure, axes = panel_grid(
        len(splits),
        f"{title}: accuracy vs learning rate (mean ± {confidence:.0%} CI over seeds)",
    )
    for ax, split in zip(axes, splits, strict=True):
        for key, entry in methods:
            draw_lr_curve(ax, entry, split, styles[key], confidence)
        clip_to_percent_range(ax)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel(f"{split_title(split)} accuracy (%)")
        ax.set_title(split_title(split), fontsize=10)
        ax.grid(alpha=0.3)
    handles = [*method_handles([k for k, _ in methods], styles), selected_handle()]
    handles += second_axis_handles(methods, styles)
    if any(failed_values(entry, "lr") for _, entry in methods):
        handles.append(
            Line2D([], [], linestyle="", marker="x", color="0.3", label="cell failed at this lr")
        )
    bottom_legend(figure, handles)
    return figure


def second_axis_handles(
    methods: list[tuple[str, dict[str, Any]]], styles: dict[str, MethodStyle]
) -> list[Line2D]:
    """One legend entry per curve of each method that has a second axis."""
    handles = []
    for key, entry in methods:
        values = second_axis_values(entry)
        if values == [None]:
            continue
        for rank, value in enumerate(values):
            handles.append(
                Line2D(
                    [],
                    [],
                    color=shade(styles[key].colour, curve_strength(rank, len(values))),
                    marker=styles[key].marker,
                    label=f"{key}: {second_axis(entry)}={axis_label(value)}",
                )
            )
    return handles


def draw_lr_curve(
    ax: Axes, entry: dict[str, Any], split: str, style: MethodStyle, confidence: float
) -> None:
    """One curve over lr per value of the method's second axis (a single curve if none)."""
    values = second_axis_values(entry)
    for rank, value in enumerate(values):
        curve = curve_over(entry, "lr", split, confidence, second_axis_filter(entry, value))
        if not curve:
            continue
        lrs = np.array([lr for lr, _ in curve])
        means = np.array([stat["mean"] for _, stat in curve])
        half = np.array([stat["half_width"] for _, stat in curve])
        ax.errorbar(
            lrs,
            means,
            yerr=np.nan_to_num(half),
            color=shade(style.colour, curve_strength(rank, len(values))),
            marker=style.marker,
            markersize=4,
            capsize=3,
            elinewidth=1,
            alpha=0.85,
        )
    for candidate in selected_candidates(entry):
        value = accuracy(candidate, split)
        if value is not None:
            ax.scatter(candidate["hparams"]["lr"], value, **marker_style(style, selected=True))
    for lr in failed_values(entry, "lr"):
        ax.plot(
            lr,
            0.02,
            marker="x",
            color=style.colour,
            transform=ax.get_xaxis_transform(),
            markersize=7,
            clip_on=False,
        )


# --- LP regularisation path ----------------------------------------------------------------------


def lp_path_figure(
    results: dict[str, Any], styles: dict[str, MethodStyle], title: str
) -> Figure | None:
    """Accuracy of every split along the C path of each LP-type method; the selected C dashed."""
    methods = [(k, e) for k, e in visible_methods(results) if main_axis(e) == "C"]
    if not methods:
        return None
    return path_figure(results, methods, styles, f"{title}: linear probe accuracy vs C")


def other_sweeps_figure(
    results: dict[str, Any], styles: dict[str, MethodStyle], title: str
) -> Figure | None:
    """The same panels for every method whose main axis is neither the learning rate nor C
    (WiSE-FT's mixing coefficient, a soup's recipe, ...)."""
    methods = [(k, e) for k, e in visible_methods(results) if main_axis(e) not in (None, "lr", "C")]
    if not methods:
        return None
    return path_figure(results, methods, styles, f"{title}: accuracy along each method's sweep")


AXIS_TITLES = {"C": "inverse L2 regularisation C", "lr": "learning rate"}
# Axes drawn on a log scale whatever their span (grids of these are geometric).
LOG_AXES = ("C", "lr")


def path_figure(
    results: dict[str, Any],
    methods: list[tuple[str, dict[str, Any]]],
    styles: dict[str, MethodStyle],
    title: str,
) -> Figure:
    """One panel per method: accuracy of every split against its main axis (a curve per value
    of a second axis), the values selected on ID val dashed."""
    axes_in_use = {main_axis(e) for _, e in methods}
    splits = [
        split
        for split in ["id_val", "id_test", *ood_names(results)]
        if any(
            curve_over(entry, str(main_axis(entry)), split, results["confidence"])
            for _, entry in methods
        )
    ]
    figure, axes = panel_grid(len(methods), title, panel_width=2 * PANEL_SIZE)
    for ax, (key, entry) in zip(axes, methods, strict=True):
        draw_path_panel(ax, results, entry, splits, styles[key])
        ax.set_title(key, fontsize=10)
    chosen_label = f"{' / '.join(sorted(str(a) for a in axes_in_use))} selected on ID val"
    chosen = Line2D([], [], color=SELECTED_EDGE, linestyle="--", label=chosen_label)
    bottom_legend(
        figure,
        [*split_handles(results, splits), chosen, *second_axis_handles(methods, styles)],
    )
    return figure


def draw_path_panel(
    ax: Axes,
    results: dict[str, Any],
    entry: dict[str, Any],
    splits: list[str],
    style: MethodStyle,
) -> None:
    axis = str(main_axis(entry))
    values = second_axis_values(entry)
    positions = axis_positions(entry, axis)
    for rank, value in enumerate(values):
        where = second_axis_filter(entry, value)
        for split in splits:
            curve = curve_over(entry, axis, split, results["confidence"], where)
            ax.plot(
                [positions(x) for x, _ in curve],
                [stat["mean"] for _, stat in curve],
                color=shade(style.colour, curve_strength(rank, len(values))),
                linestyle=split_style(results, split).linestyle,
                marker=split_style(results, split).marker,
                markersize=3.5,
            )
    chosen = {s["hparams"][axis] for s in selected_candidates(entry) if axis in s["hparams"]}
    for x in sorted(chosen, key=axis_sort_key):
        ax.axvline(positions(x), color=SELECTED_EDGE, linestyle="--", linewidth=1)
    scale_axis(ax, entry, axis)
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)


def axis_values(entry: dict[str, Any], axis: str) -> list[Any]:
    found = {
        c["hparams"][axis]
        for seed in distinct_seeds(entry)
        for c in candidates_of(seed)
        if axis in c["hparams"]
    }
    return sorted(found, key=axis_sort_key)


def is_categorical(values: list[Any]) -> bool:
    return any(isinstance(v, str) for v in values)


def axis_positions(entry: dict[str, Any], axis: str) -> Callable[[Any], Any]:
    """Where a value sits on the x axis: itself, or its index for named values."""
    values = axis_values(entry, axis)
    if is_categorical(values):
        return values.index
    return lambda value: value


def scale_axis(ax: Axes, entry: dict[str, Any], axis: str) -> None:
    """Log scale for positive values spanning a decade or more, ticks for named values."""
    values = axis_values(entry, axis)
    title = AXIS_TITLES.get(axis, axis)
    if is_categorical(values):
        ax.set_xticks(range(len(values)), [str(v) for v in values])
        ax.set_xlabel(title)
    elif axis in LOG_AXES or (values and min(values) > 0 and max(values) >= 10 * min(values)):
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} (log scale)")
    else:
        ax.set_xlabel(title)


# --- feature distortion --------------------------------------------------------------------------


def distortion_bars_figure(
    results: dict[str, Any], styles: dict[str, MethodStyle], title: str
) -> Figure | None:
    """Penultimate-feature L2 change per method, one bar per split, mean ± CI over seeds; a log
    axis when the methods differ by more than DISTORTION_LOG_RATIO."""
    methods = [(k, e) for k, e in visible_methods(results) if "distortion" in e["summary"]]
    if not methods:
        return None
    splits = ["id_test", *ood_names(results)]
    figure = Figure(
        figsize=(min(10.0, max(MIN_WIDTH, 2.5 + 0.55 * len(methods) * len(splits))), 4.6),
        dpi=DPI,
        layout="constrained",
    )
    ax = figure.subplots()
    heights = [h for h in draw_distortion_bars(ax, results, methods, styles) if h > 0]
    log_scale = bool(heights) and max(heights) / min(heights) > DISTORTION_LOG_RATIO
    if log_scale:
        ax.set_yscale("log")
    ax.set_ylabel("mean L2 change of penultimate features" + (" (log scale)" if log_scale else ""))
    ax.set_xticks(range(len(methods)), [key for key, _ in methods])
    ax.set_xlabel("method (selected candidate per seed)")
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)
    set_title(
        figure,
        f"{title}: feature distortion, pretrained vs fine-tuned "
        f"(mean ± {results['confidence']:.0%} CI over seeds)",
    )
    patches = [
        Patch(
            facecolor="0.55",
            edgecolor="white",
            hatch=split_style(results, split).hatch,
            label=split_title(split),
        )
        for split in splits
    ]
    bottom_legend(figure, patches)
    return figure


def draw_distortion_bars(
    ax: Axes,
    results: dict[str, Any],
    methods: list[tuple[str, dict[str, Any]]],
    styles: dict[str, MethodStyle],
) -> list[float]:
    """One group of bars per method, one bar per split, labelled with its mean; returns the
    means."""
    splits = ["id_test", *ood_names(results)]
    width = 0.8 / len(splits)
    heights = []
    for group, (key, entry) in enumerate(methods):
        for index, split in enumerate(splits):
            stat = entry["summary"]["distortion"][split]["l2"]
            bars = ax.bar(
                group + (index - (len(splits) - 1) / 2) * width,
                stat["mean"],
                width,
                yerr=nonnegative_error(stat),
                capsize=3,
                color=styles[key].colour,
                hatch=split_style(results, split).hatch,
                edgecolor="white",
                linewidth=0.8,
                error_kw={"elinewidth": 1, "ecolor": "0.2"},
            )
            ax.bar_label(bars, labels=[significant(stat["mean"])], fontsize=7, padding=2)
            heights.append(stat["mean"])
    return heights


def nonnegative_error(stat: dict[str, float]) -> list[list[float]]:
    """(lower, upper) error-bar lengths of a non-negative quantity: the interval is cut at 0."""
    half = 0.0 if math.isnan(stat["half_width"]) else stat["half_width"]
    return [[min(half, max(stat["mean"], 0.0))], [half]]


def block_order(entry: dict[str, Any]) -> list[str]:
    for candidate in selected_candidates(entry):
        for split in candidate.get("distortion", {}).values():
            return list(split["blocks"])
    return []


def block_means(entry: dict[str, Any], split: str, measure: str, blocks: list[str]) -> list[float]:
    chosen = [c for c in selected_candidates(entry) if split in c.get("distortion", {})]
    return [
        float(np.mean([c["distortion"][split]["blocks"][b][measure] for c in chosen]))
        for b in blocks
    ]


def block_distortion_figure(
    results: dict[str, Any], styles: dict[str, MethodStyle], title: str
) -> Figure | None:
    """Relative change and linear CKA of each block's output, network order, mean over seeds."""
    methods = [(k, e) for k, e in visible_methods(results) if block_order(e)]
    if not methods:
        return None
    splits = ["id_test", *ood_names(results)]
    blocks = block_order(methods[0][1])
    figure, (change_ax, cka_ax) = panel_grid(
        2,
        f"{title}: distortion per block (selected candidates, mean over seeds)",
        panel_width=1.4 * PANEL_SIZE,
    )
    for key, entry in methods:
        for split in splits:
            line = {
                "color": styles[key].colour,
                "linestyle": split_style(results, split).linestyle,
                "marker": split_style(results, split).marker,
                "markersize": 4,
            }
            change_ax.plot(blocks, block_means(entry, split, "relative", blocks), **line)
            cka_ax.plot(blocks, block_means(entry, split, "cka", blocks), **line)
    change_ax.set_yscale("log")
    change_ax.set_ylabel("relative change ‖Δh‖ / ‖h‖ (log scale)")
    change_ax.set_title("relative change of block outputs", fontsize=10)
    cka_ax.set_ylabel("linear CKA (1 = unchanged)")
    cka_ax.set_title("linear CKA of block outputs", fontsize=10)
    for ax in (change_ax, cka_ax):
        ax.set_xlabel("block (input → output)")
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(alpha=0.3)
    bottom_legend(
        figure,
        [
            *method_handles([k for k, _ in methods], styles, with_marker=False),
            *split_handles(results, splits),
        ],
    )
    return figure


# --- training curves -----------------------------------------------------------------------------


def training_curves_figure(
    results: dict[str, Any], styles: dict[str, MethodStyle], title: str
) -> Figure | None:
    """ID val accuracy per epoch, one line per learning rate (darker = larger), mean over seeds;
    each seed's selected (lr, epoch) is a black-edged marker."""
    methods = [(k, e) for k, e in visible_methods(results) if "lr" in axes_of(e)]
    methods = [(k, e) for k, e in methods if history_by_setting(e)]
    if not methods:
        return None
    figure, axes = panel_grid(len(methods), f"{title}: ID validation accuracy per epoch")
    for ax, (key, entry) in zip(axes, methods, strict=True):
        draw_training_curves(ax, entry, styles[key])
        ax.set_xlabel("epoch")
        ax.set_ylabel("ID val accuracy (%)")
        ax.set_title(key, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title=setting_title(entry), title_fontsize=7, loc="best")
    bottom_legend(figure, [selected_handle()])
    return figure


def setting_key(entry: dict[str, Any], hparams: dict[str, Any]) -> tuple[Any, ...]:
    """The candidate's setting on the method's axes, learning rate first."""
    axes = ["lr", *[a for a in axes_of(entry) if a != "lr"]]
    return tuple(hparams.get(a) for a in axes)


def setting_title(entry: dict[str, Any]) -> str:
    return ", ".join(["lr", *[a for a in axes_of(entry) if a != "lr"]])


def history_by_setting(entry: dict[str, Any]) -> dict[tuple[Any, ...], dict[int, list[float]]]:
    """setting (lr, then any other axis) -> epoch -> ID val accuracy (%) of each seed."""
    curves: dict[tuple[Any, ...], dict[int, list[float]]] = {}
    for seed in distinct_seeds(entry):
        for candidate in candidates_of(seed):
            for record in candidate.get("history", []):
                epochs = curves.setdefault(setting_key(entry, candidate["hparams"]), {})
                epochs.setdefault(record["epoch"], []).append(record["id_val"] * PERCENT)
    return curves


def draw_training_curves(ax: Axes, entry: dict[str, Any], style: MethodStyle) -> None:
    curves = history_by_setting(entry)
    settings = sorted(curves, key=lambda key: tuple(axis_sort_key(v) for v in key))
    for rank, setting in enumerate(settings):
        epochs = sorted(curves[setting])
        strength = 0.35 + 0.65 * (rank + 1) / len(settings)
        ax.plot(
            epochs,
            [float(np.mean(curves[setting][e])) for e in epochs],
            color=shade(style.colour, strength),
            marker=".",
            label=", ".join(axis_label(v) for v in setting),
        )
    for candidate in selected_candidates(entry):
        if "best_epoch" in candidate:
            ax.scatter(
                candidate["best_epoch"],
                candidate["id_val"] * PERCENT,
                **marker_style(style, selected=True),
            )
    ax.xaxis.get_major_locator().set_params(integer=True)


@dataclass(frozen=True)
class FigureSpec:
    name: str
    build: Callable[[dict[str, Any], dict[str, MethodStyle], str], Figure | None]
    caption: str


FIGURE_SPECS = (
    FigureSpec(
        "id-vs-ood",
        id_vs_ood_figure,
        "ID test vs OOD accuracy of every candidate (method × seed × hyperparameters); "
        "selected candidates are large with a black edge, the others faded; points nearer the "
        "dashed y = x line lose less accuracy under the shift. A line joins a method's "
        "candidates along its path (WiSE-FT's alpha from 0 to 1), mean over seeds.",
    ),
    FigureSpec(
        "lr-sweep",
        lr_sweep_figure,
        "Accuracy against the learning rate for every fine-tuning method, mean and CI over "
        "seeds; black-edged markers are the learning rates ID validation selected, per seed.",
    ),
    FigureSpec(
        "lp-path",
        lp_path_figure,
        "Linear-probe accuracy along the regularisation path; the dashed vertical line is the C "
        "chosen on ID validation.",
    ),
    FigureSpec(
        "other-sweeps",
        other_sweeps_figure,
        "Accuracy along the sweep of every method whose main hyperparameter is neither the "
        "learning rate nor C (e.g. WiSE-FT's mixing coefficient alpha, a soup's recipe), mean "
        "over seeds; the dashed vertical lines are the values chosen on ID validation.",
    ),
    FigureSpec(
        "distortion",
        distortion_bars_figure,
        "How far fine-tuning moved the penultimate features (mean Euclidean change, pretrained "
        "vs fine-tuned backbone) on ID and OOD inputs: selected candidates, mean ± CI over seeds.",
    ),
    FigureSpec(
        "block-distortion",
        block_distortion_figure,
        "Change of each block's pooled output in network order: relative L2 change and linear "
        "CKA; colour = method, line style = split.",
    ),
    FigureSpec(
        "training-curves",
        training_curves_figure,
        "ID validation accuracy per epoch for every learning rate (mean over seeds); "
        "black-edged markers are each seed's selected (learning rate, epoch).",
    ),
)
