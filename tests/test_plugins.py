"""A user's own package registers a method through the ``lpft.plugins`` entry point group, and
``lpft run --methods`` then runs it, with no change to lpft."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN_MODULE = '''
"""A test-only plugin: FT whose head starts at zero, under its own name."""

from lpft.methods.finetune import FineTune
from lpft.registry import METHODS


@METHODS.register("zero-head-ft")
class ZeroHeadFineTune(FineTune):
    name = "zero-head-ft"

    def init_head(self, model, options, required):
        model.head.weight.data.zero_()
        model.head.bias.data.zero_()
'''


def install_plugin(site: Path) -> None:
    """What ``pip install`` of a package declaring the entry point leaves on ``sys.path``."""
    (site / "lpft_test_plugin.py").write_text(PLUGIN_MODULE)
    dist = site / "lpft_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lpft-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lpft.plugins]\nzero-head-ft = lpft_test_plugin\n")


def test_plugin_method_runs_from_the_command_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    command = [sys.executable, "-m", "lpft.cli.main", "run", "--quick", "--seeds", "1"]
    command += ["--benchmark", "digits-shift", "--methods", "lp,zero-head-ft", "--epochs", "1"]
    command += ["--out", str(out), "--no-report", "--quiet", "--device", "cpu"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)

    assert finished.returncode == 0, finished.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["zero-head-ft"]["method"] == "zero-head-ft"
    assert results["methods"]["zero-head-ft"]["seeds"][0]["selected"]["id_test"] >= 0.0


def test_unknown_method_lists_plugins_among_the_valid_names(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    command = [sys.executable, "-m", "lpft.cli.main", "run", "--methods", "zero-head-fx"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert finished.returncode == 2
    assert "did you mean zero-head-ft" in finished.stderr
