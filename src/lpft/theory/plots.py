"""PNG figures of the simulator's results (matplotlib, Agg canvas, no global backend change)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from lpft.theory.dynamics import Trajectory
from lpft.theory.sweeps import SweepResult

TIME_LABEL = "gradient-flow time t (dimensionless; t = 0 not shown)"
ID_LABEL = "ID loss (1/n)||X B^T v - y||^2"
OOD_LABEL = "OOD loss ||B*^T v* - B^T v||^2 (||w*|| = 1)"
PANEL_WIDTH, FIGURE_HEIGHT = 5.6, 4.6
COLORS = {"LP": "tab:blue", "FT": "tab:red", "LP-FT": "tab:green", "bound": "black"}
SWEEP_LABELS = {
    "eps": ("feature error eps = ||B0 - U B*||_2", "log"),
    "n": ("number of ID examples n", "linear"),
    "init_scale": ("FT head init norm ||v0||", "log"),
}


def plot_loss_curves(
    trajectories: list[Trajectory], ft_bound: float, path: Path, title: str
) -> Path:
    """ID and OOD loss over time; LP is a horizontal line, the Thm 3.1 bound a dashed one."""
    figure, (id_axes, ood_axes) = _figure(2)
    flows = [trajectory for trajectory in trajectories if trajectory.times.size > 1]
    span = (min(float(t.times[1]) for t in flows), max(float(t.times[-1]) for t in flows))
    for trajectory in trajectories:
        _plot_over_time(id_axes, trajectory, trajectory.id_loss, span)
        _plot_over_time(ood_axes, trajectory, trajectory.ood_loss, span)
    if ft_bound > 0:
        ood_axes.plot(
            span,
            [ft_bound, ft_bound],
            color=COLORS["bound"],
            linestyle="--",
            label="Thm 3.1 bound (FT, all t)",
        )
    _finish(id_axes, TIME_LABEL, ID_LABEL, "log", "log", "ID loss over time")
    _finish(ood_axes, TIME_LABEL, OOD_LABEL, "log", "log", "OOD loss over time")
    figure.suptitle(title)
    return _save(figure, path)


def plot_distortion(trajectories: list[Trajectory], path: Path, title: str) -> Path:
    """How far B moves inside / outside rowspace(X), and the drift of v v^T - B B^T."""
    figure, (move_axes, drift_axes) = _figure(2)
    for trajectory in trajectories:
        times, color = trajectory.times[1:], COLORS[trajectory.method]
        move_axes.plot(
            times,
            trajectory.distortion_in[1:],
            color=color,
            label=f"{trajectory.method}: inside rowspace(X)",
        )
        move_axes.plot(
            times,
            trajectory.distortion_out[1:],
            color=color,
            linestyle=":",
            label=f"{trajectory.method}: outside rowspace(X)",
        )
        drift_axes.plot(
            times,
            trajectory.balancedness_drift[1:],
            color=color,
            label=f"{trajectory.method}: drift",
        )
        drift_axes.axhline(
            trajectory.balancedness_tolerance,
            color=color,
            linestyle="--",
            label=f"{trajectory.method}: integrator error estimate",
        )
    _finish(
        move_axes,
        TIME_LABEL,
        "||(B(t) - B0) P||_F (same units as B)",
        "log",
        "log",
        "feature change, split by subspace",
    )
    _finish(
        drift_axes,
        TIME_LABEL,
        "||M(t) - M(0)||_F,  M = v v^T - B B^T",
        "log",
        "log",
        "balancedness is conserved",
    )
    figure.suptitle(title)
    return _save(figure, path)


def plot_sweeps(results: list[SweepResult], path: Path, title: str) -> Path:
    """Final OOD loss per method (and the FT bound) against each swept knob.

    A sweep over eps gets a second panel with L_ood(LP) / L_ood(FT), the ratio of Thm 3.2.
    """
    with_ratio = [result for result in results if result.parameter == "eps"]
    figure, panels = _figure(len(results) + len(with_ratio))
    for axes, result in zip(panels, results, strict=False):
        _plot_sweep_losses(axes, result)
    for axes, result in zip(panels[len(results) :], with_ratio, strict=True):
        label, x_scale = SWEEP_LABELS[result.parameter]
        axes.plot(
            result.values,
            result.lp_to_ft_ood_ratio,
            marker="o",
            color="tab:purple",
            label="L_ood(LP) / L_ood(FT)",
        )
        _finish(
            axes,
            label,
            "OOD loss ratio (dimensionless)",
            x_scale,
            "log",
            "Thm 3.2: LP-to-FT OOD ratio",
        )
    figure.suptitle(title)
    return _save(figure, path)


def _plot_sweep_losses(axes: Axes, result: SweepResult) -> None:
    label, x_scale = SWEEP_LABELS[result.parameter]
    for method, losses in (
        ("LP", result.lp_ood),
        ("FT", result.ft_ood),
        ("LP-FT", result.lpft_ood),
    ):
        axes.plot(result.values, losses, marker="o", color=COLORS[method], label=method)
    positive = result.ft_bound > 0
    if positive.any():
        axes.plot(
            result.values[positive],
            result.ft_bound[positive],
            marker="x",
            linestyle="--",
            color=COLORS["bound"],
            label="Thm 3.1 bound (FT)",
        )
    _finish(
        axes, label, f"final {OOD_LABEL}", x_scale, "log", f"OOD loss against {result.parameter}"
    )


def _plot_over_time(
    axes: Axes, trajectory: Trajectory, values: np.ndarray, span: tuple[float, float]
) -> None:
    """A flow's values at its recorded times t > 0; a single state (LP) as a flat line."""
    color = COLORS[trajectory.method]
    if trajectory.times.size == 1:
        axes.plot(
            span,
            [values[0], values[0]],
            color=color,
            linestyle="-.",
            label=f"{trajectory.method} (no training dynamics)",
        )
        return
    axes.plot(trajectory.times[1:], values[1:], color=color, label=trajectory.method)


def _figure(panels: int) -> tuple[Figure, list[Axes]]:
    """A row of panels with fixed margins (automatic layout engines triple the drawing time)."""
    width = PANEL_WIDTH * panels
    figure = Figure(figsize=(width, FIGURE_HEIGHT))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(
        left=0.85 / width, right=1 - 0.15 / width, bottom=0.12, top=0.86, wspace=0.32
    )
    return figure, list(np.atleast_1d(figure.subplots(1, panels)))


def _finish(axes: Axes, xlabel: str, ylabel: str, xscale: str, yscale: str, title: str) -> None:
    axes.set_xscale(xscale)
    axes.set_yscale(yscale)
    for axis, scale in ((axes.xaxis, xscale), (axes.yaxis, yscale)):
        if scale == "log":
            axis.set_minor_locator(NullLocator())
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize="small")


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=110)
    return path
