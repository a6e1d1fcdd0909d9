"""``lpft run`` from the command line: the quick profile, resume, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_fixtures import make_folder_dataset
from lpft.cli.main import main

TINY = ["--benchmark", "tiny", "--model", "builtin:tiny-test", "--quiet", "--device", "cpu"]


def test_quick_run_prints_the_table_and_writes_results(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["run", *TINY, "--quick", "--no-report", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ID test" in printed and "OOD shifted" in printed and "lpft" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == 2
    assert set(results["methods"]) == {"lp", "ft", "lpft"}


def test_resume_flag_reuses_the_saved_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", *TINY, "--quick", "--no-report", "--seeds", "1", "--out", str(out)]) == 0
    before = json.loads((out / "results.json").read_text())
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    after = json.loads((out / "results.json").read_text())
    assert after["methods"]["ft"]["summary"] == before["methods"]["ft"]["summary"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "methods.ft.epochs=0"], "methods.ft.epochs=0"),
        (["--model", "builtin:no-such-net"], "unknown builtin backbone 'no-such-net'"),
        (["--methods", "lp,no-such-method"], "unknown method 'no-such-method'"),
        (["--seeds", "5"], "holds a run with a different config (seeds"),
    ],
)
def test_bad_input_on_a_finished_run_leaves_its_results_intact(
    tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    out = tmp_path / "run"
    assert main(["run", *TINY, "--quick", "--no-report", "--seeds", "1", "--out", str(out)]) == 0
    saved = (out / "results.json").read_bytes()
    capsys.readouterr()
    assert (
        main(["run", *TINY, "--quick", "--no-report", "--seeds", "1", "--out", str(out), *extra])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert (out / "results.json").read_bytes() == saved


def test_resume_of_a_directory_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no config.yaml there" in capsys.readouterr().err


def test_failed_input_on_a_fresh_directory_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    assert main(["run", *TINY, "--quick", "--model", "builtin:nope", "--out", str(out)]) == 2
    assert not out.exists()


def test_insufficient_disk_space_is_reported_before_training(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    class Usage:
        free = 1024

    monkeypatch.setattr("lpft.io.shutil.disk_usage", lambda _path: Usage())
    out = tmp_path / "run"
    assert main(["run", *TINY, "--quick", "--out", str(out)]) == 2
    assert "not enough disk space" in capsys.readouterr().err
    assert not out.exists()


def test_skipped_bad_images_are_counted_in_results(tmp_path: Path) -> None:
    root = make_folder_dataset(tmp_path / "data")
    bad = root / "train" / "dog" / "1.png"
    bad.write_bytes(bad.read_bytes()[:40])
    out = tmp_path / "run"
    argv = [
        "run",
        "--benchmark",
        "folder",
        "--data-root",
        str(root),
        "--model",
        "builtin:tiny-test",
        "--quick",
        "--no-report",
        "--quiet",
        "--out",
        str(out),
        "--methods",
        "lp",
    ]
    assert main(argv) == 2
    assert main([*argv, "--skip-bad-images"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"]["skipped_bad_images"] == 1
    assert results["benchmark"]["bad_images"] == [str(bad)]
