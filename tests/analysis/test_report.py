"""``write_report`` and ``lpft report`` on synthetic run directories (see conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lpft.analysis import figures
from lpft.analysis.report import (
    DOCTOR_FILE,
    doctor_section,
    load_runs,
    write_report,
)
from lpft.cli import main as cli_main
from lpft.cli.main import main
from lpft.errors import LpftError
from lpft.run.results import summarise

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = {spec.name for spec in figures.FIGURE_SPECS}


def figure_names(written: list[Path], prefix: str) -> set[str]:
    return {
        p.stem.removeprefix(f"{prefix}-")
        for p in written
        if p.suffix == ".png" and p.stem.startswith(prefix)
    }


@pytest.fixture(scope="module")
def single_report(tmp_path_factory, synthetic) -> tuple[Path, list[Path]]:
    """One synthetic run (with a failed cell) and its report, shared by several tests."""
    root = tmp_path_factory.mktemp("single")
    run = root / "run"
    run.mkdir()
    results = synthetic("bench-a", failed_lr=1e-1, new_methods=True)
    (run / "results.json").write_text(json.dumps(results))
    return run, write_report([run], root / "out")


def test_report_writes_markdown_html_and_every_figure(single_report) -> None:
    _, written = single_report
    out = written[0].parent
    assert written[:2] == [out / "report.md", out / "report.html"]
    assert figure_names(written, "bench-a") == ALL_FIGURES
    for path in written:
        assert path.is_file()
        if path.suffix == ".png":
            assert path.read_bytes().startswith(PNG_MAGIC)
    markdown = written[0].read_text()
    links = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    assert len(links) == len(ALL_FIGURES)
    assert all((out / link).is_file() for link in links)
    assert "| method | setting | ID test | OOD shift-1 | OOD shift-2 | OOD avg |" in markdown


def test_html_is_self_contained(single_report) -> None:
    page = single_report[1][1].read_text()
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == len(ALL_FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "://" not in text
    assert not re.search(r"<(link|script|iframe)\b|\burl\(|@import|\bhref=", text)
    assert "<style>" in text


def test_failed_cells_are_listed_with_their_error(single_report) -> None:
    markdown, page = (path.read_text() for path in single_report[1][:2])
    expected = "bench-a · ft · seed 0 · lr=0.1: non-finite loss at step 7"
    assert expected in markdown
    assert expected in page


def test_report_is_deterministic(single_report, tmp_path: Path) -> None:
    run, first = single_report
    second = write_report([run], tmp_path / "again")
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_two_benchmarks_merge_into_one_report(make_run_dir, tmp_path: Path) -> None:
    first = make_run_dir("a", benchmark="living-17", ood=("target",), new_methods=True)
    second = make_run_dir(
        "b", benchmark="domainnet", ood=("real", "painting"), rng_seed=1, new_methods=True
    )
    written = write_report([first, second], tmp_path / "out")
    markdown = written[0].read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| method | setting"))
    titles = (
        "living-17 · ID test",
        "living-17 · OOD target",
        "domainnet · ID test",
        "domainnet · OOD real",
        "domainnet · OOD painting",
        "domainnet · OOD avg",
    )
    for title in titles:
        assert title in header
    page = written[1].read_text()
    assert '<th class="group" colspan="2">living-17</th>' in page
    assert '<th class="group" colspan="4">domainnet</th>' in page
    assert figure_names(written, "living-17") == ALL_FIGURES
    assert figure_names(written, "domainnet") == ALL_FIGURES


def test_runs_of_the_same_benchmark_are_labelled_by_directory(make_run_dir) -> None:
    dirs = [
        make_run_dir("baseline", benchmark="same"),
        make_run_dir("bn-eval", benchmark="same"),
        make_run_dir("other", benchmark="unique"),
    ]
    assert [run.label for run in load_runs(dirs)] == ["baseline", "bn-eval", "unique"]


def test_colliding_directory_names_are_numbered(make_run_dir) -> None:
    dirs = [make_run_dir(f"{side}/run", benchmark="same") for side in ("x", "y")]
    assert [run.label for run in load_runs(dirs)] == ["run (1)", "run (2)"]


def test_partial_run_is_reported_with_a_warning(make_run_dir, tmp_path: Path) -> None:
    run = make_run_dir(status="partial", evaluated=False)
    written = write_report([run], tmp_path / "out")
    markdown, page = written[0].read_text(), written[1].read_text()
    assert "> **Warning:** synthetic-a: results.json has status 'partial'" in markdown
    assert '<div class="warning">' in page
    assert "| ft | BN train; lr: 0.001, 0.01, 0.1; " in markdown
    assert "| — | — | — | — |" in markdown and "statistics over" not in markdown
    assert {"lr-sweep", "lp-path", "training-curves"} <= figure_names(written, "synthetic-a")


def test_method_whose_cells_all_failed_is_still_reported(synthetic, tmp_path: Path) -> None:
    results = synthetic(ood=("shift",))
    ft = results["methods"]["ft"]
    for seed in ft["seeds"]:
        seed["selected"] = None
        for cell in seed["cells"]:
            cell.update(status="failed", error="loss is nan", candidates=[])
    ft["summary"] = summarise(ft["seeds"], ["shift"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results))
    markdown = write_report([run], tmp_path / "out")[0].read_text()
    assert "| ft | BN train; lr: 0.001, 0.01, 0.1, 9 failed cell(s) | — | — |" in markdown
    assert "ft: statistics over 0 of 3 seeds" in markdown
    assert markdown.count("loss is nan") == 9


def test_hidden_methods_are_left_out(synthetic) -> None:
    results = synthetic()
    results["methods"]["lp"]["hidden"] = True
    assert [key for key, _ in figures.visible_methods(results)] == ["ft", "lpft"]
    figure = figures.lp_path_figure(results, figures.method_styles(results["methods"]), "t")
    assert figure is None


def test_variant_methods_get_their_own_colour() -> None:
    styles = figures.method_styles(["lpft", "ft@bn-eval", "lp", "ft", "ft@wd"])
    assert styles["ft"].colour == "tab:red"
    assert styles["lpft"].colour == "tab:green"
    assert styles["ft@bn-eval"].colour != styles["ft@wd"].colour
    assert figures.method_styles(["ft@wd", "ft@bn-eval"]) == styles


def test_variant_with_lr_grid_appears_in_learning_rate_sweep(synthetic) -> None:
    results = synthetic()
    results["methods"]["ft@bn-eval"] = json.loads(json.dumps(results["methods"]["ft"]))
    styles = figures.method_styles(results["methods"])
    figure = figures.lr_sweep_figure(results, styles, "t")
    labels = {text.get_text() for text in figure.legends[0].get_texts()}
    assert {"ft", "lpft", "ft@bn-eval"} <= labels


def test_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(LpftError, match=re.escape(f"{missing}: no such run directory")):
        write_report([missing], tmp_path / "out")


def test_directory_without_results_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LpftError, match=re.escape(str(tmp_path / "empty" / "results.json"))):
        write_report([tmp_path / "empty"], tmp_path / "out")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"schema": "lpft-results-v0"}, "schema is 'lpft-results-v0', expected 'lpft-results-v1'"),
        ([1, 2], "schema is 'list', expected 'lpft-results-v1'"),
        ({"schema": "lpft-results-v1", "status": "complete"}, "missing field 'benchmark.name'"),
    ],
)
def test_wrong_results_file_is_a_one_line_error(tmp_path: Path, content, message: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(content))
    with pytest.raises(LpftError) as caught:
        write_report([run], tmp_path / "out")
    text = str(caught.value)
    assert "\n" not in text
    assert str(run / "results.json") in text
    assert message in text


def test_invalid_json_is_an_error_naming_the_file(make_run_dir, tmp_path: Path) -> None:
    run = make_run_dir()
    (run / "results.json").write_text("{not json")
    with pytest.raises(LpftError, match=re.escape(str(run / "results.json"))):
        write_report([run], tmp_path / "out")


@pytest.fixture
def report_subcommand_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the CLI with the report subcommand alone, independent of the others."""
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", ("report",))


@pytest.mark.usefixtures("report_subcommand_only")
def test_cli_writes_into_the_single_run_directory(make_run_dir, capsys) -> None:
    run = make_run_dir(new_methods=True)
    assert main(["report", str(run)]) == 0
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    assert (run / "report.md").is_file()
    assert len(list((run / "figures").glob("*.png"))) == len(ALL_FIGURES)


@pytest.mark.usefixtures("report_subcommand_only")
def test_cli_errors_exit_with_code_2(make_run_dir, tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert f"lpft: error: {tmp_path / 'missing'}: no such run directory" in capsys.readouterr().err
    assert main(["report", str(make_run_dir("a")), str(make_run_dir("b"))]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_doctor_diagnosis_in_the_run_directory_gets_its_section(
    make_run_dir, monkeypatch
) -> None:
    monkeypatch.setattr(figures, "FIGURE_SPECS", [])  # the figures are not what is tested here
    assert doctor_section(load_runs([make_run_dir("plain")])[0]) == []
    run_dir = make_run_dir("run")
    doctor = {
        "recommendation": "lpft",
        "confidence": 0.87,
        "reason": "target features lag",
        "doctor_seconds": 12.0,
        "indicators": [
            {"name": "distortion asymmetry", "value": 0.9, "reference": 1.0, "reading": "lags"},
            {"name": "short FT - LP", "value": -0.01, "reference": None, "reading": "LP suffices"},
        ],
        "estimated_cost_seconds": {"lp": 2.0, "ft": 90.0},
    }
    (run_dir / DOCTOR_FILE).write_text(json.dumps(doctor))
    write_report([run_dir], run_dir)
    report = (run_dir / "report.md").read_text()
    assert "## synthetic-a: lpft doctor" in report
    assert "Recommendation: lpft (confidence 87%): target features lag." in report
    assert "| distortion asymmetry | 0.900 | 1.000 | lags |" in report
    assert "lp 2 s, ft 90 s" in report
