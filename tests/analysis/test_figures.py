"""Figures follow each method's declared sweep axes: a second axis gives one curve per value,
a curve axis (WiSE-FT's alpha) a line on the ID-vs-OOD scatter, other axes their own panels."""

from __future__ import annotations

from matplotlib.colors import to_rgb

from lpft.analysis import figures


def legend_labels(figure) -> list[str]:
    return [text.get_text() for legend in figure.legends for text in legend.get_texts()]


def styles_for(results):
    return figures.method_styles(results["methods"])


def test_second_axis_gives_one_curve_per_value(synthetic) -> None:
    results = synthetic(new_methods=True)
    figure = figures.lr_sweep_figure(results, styles_for(results), "t")
    labels = legend_labels(figure)
    assert "l2sp: alpha=0.01" in labels and "l2sp: alpha=1" in labels
    colour = to_rgb(styles_for(results)["l2sp"].colour)
    shades = {figures.shade(colour, s) for s in (0.675, 1.0)}
    l2sp_curves = [
        bars
        for bars in figure.axes[0].containers
        if tuple(to_rgb(bars.lines[0].get_color())) in shades
    ]
    assert len(l2sp_curves) == 2


def test_wise_ft_path_is_a_line_on_the_id_vs_ood_scatter(synthetic) -> None:
    results = synthetic(new_methods=True)
    styles = styles_for(results)
    figure = figures.id_vs_ood_figure(results, styles, "t")
    colour = to_rgb(styles["wise-ft"].colour)
    paths = [
        line
        for line in figure.axes[0].get_lines()
        if to_rgb(line.get_color()) == colour and len(line.get_xdata()) == 5
    ]
    assert len(paths) == 1
    assert "wise-ft: alpha path (mean)" in legend_labels(figure)
    assert "not selected (other lr / C / alpha / seed)" in legend_labels(figure)


def test_other_main_axes_get_their_own_panels(synthetic) -> None:
    results = synthetic(new_methods=True)
    figure = figures.other_sweeps_figure(results, styles_for(results), "t")
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == ["wise-ft"]
    assert figure.axes[0].get_xlabel() == "alpha"
    assert figures.other_sweeps_figure(synthetic(), styles_for(synthetic()), "t") is None


def test_lp_ft_lpft_figures_keep_their_legends(synthetic) -> None:
    results = synthetic()
    styles = styles_for(results)
    sweep = legend_labels(figures.lr_sweep_figure(results, styles, "t"))
    assert sweep == ["ft", "lpft", "selected on ID val (per seed)"]
    scatter = legend_labels(figures.id_vs_ood_figure(results, styles, "t"))
    assert "not selected (other lr / C / seed)" in scatter
    path = figures.lp_path_figure(results, styles, "t")
    assert "C selected on ID val" in legend_labels(path)
    assert path.axes[0].get_xscale() == "log"
