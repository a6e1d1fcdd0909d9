"""``lpft status``: the fine-tuning throughput of each fitted cell."""

from __future__ import annotations

import re
from pathlib import Path

from lpft.cli.main import main
from lpft.config import resolve_config
from lpft.run.jobs import prepare_run_directory, run_cell
from tests_support import tiny_run_config


def test_status_shows_images_per_second_of_fine_tuned_cells(tmp_path: Path, capsys) -> None:
    methods = {"lp": {"C": [1.0]}, "ft": {"epochs": 1}}
    config = resolve_config(overrides=tiny_run_config(tmp_path / "run", methods))
    run = prepare_run_directory(config)
    assert run_cell(run, "ft/seed0/lr=0.01") == "done"
    assert main(["status", str(run)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"\bimages/s\b", table)
    assert re.search(r"ft\W+0\W+lr=0.01\W+done\W+[\d,]+\s", table), table
    assert re.search(r"lp\W+shared\W+sweep\W+pending\W+│", table), table
