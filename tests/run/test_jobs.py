"""Cell jobs on a shared run directory: what ``lpft status`` shows, a job's failure and retry,
and ``lpft collect``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lpft.cli.main import main
from lpft.config import resolve_config
from lpft.run.cell import ERROR
from lpft.run.claims import try_claim
from lpft.run.jobs import CellJobs, DependencyNotReady, prepare_run_directory, run_cell
from tests_support import tiny_run_config


def prepared(tmp_path: Path) -> Path:
    methods = {"lp": {"C": [1.0]}, "lpft": {}}
    config = resolve_config(overrides=tiny_run_config(tmp_path / "run", methods))
    return prepare_run_directory(config)


def test_cells_are_submitted_in_dependency_waves(tmp_path: Path) -> None:
    assert CellJobs(prepared(tmp_path)).waves() == [["lp/shared/sweep"], ["lpft/seed0/lr=0.001"]]


def test_status_shows_where_a_cell_runs_and_why_one_failed(tmp_path: Path, capsys) -> None:
    run = prepared(tmp_path)
    with pytest.raises(DependencyNotReady, match="needs lp/shared/sweep, which has not been"):
        run_cell(run, "lpft/seed0/lr=0.001")
    assert (run / "cells/lpft/seed0/lr=0.001" / ERROR).is_file()
    claim = try_claim(run / "cells/lp/shared/sweep", job="slurm:7")
    try:
        assert main(["status", str(run)]) == 0
    finally:
        claim.release()
    table = capsys.readouterr().out
    assert re.search(r"lp\W+shared\W+sweep\W+running\W+0\W+-\W+\S+ pid \d+, job slurm:7", table)
    assert re.search(r"lpft\W+0\W+lr=0.001\W+failed\W+1\W+failed\W+DependencyNotReady", table)
    assert "1 running, 1 failed" in table


def test_a_retried_cell_clears_its_error(tmp_path: Path) -> None:
    run = prepared(tmp_path)
    with pytest.raises(DependencyNotReady):
        run_cell(run, "lpft/seed0/lr=0.001")
    assert run_cell(run, "lp/shared/sweep") == "done"
    assert run_cell(run, "lpft/seed0/lr=0.001") == "done"
    assert not (run / "cells/lpft/seed0/lr=0.001" / ERROR).exists()
    assert [s.state for s in CellJobs(run).states()] == ["done", "done"]
    assert run_cell(run, "lp/shared/sweep") == "done already"
    assert main(["collect", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "complete"
    assert results["methods"]["lpft"]["seeds"][0]["selected"]["id_test"] >= 0.0
