"""``lpft doctor`` end to end on the tiny benchmark: no target or OOD label is ever read, the
JSON document's schema, a folder of target images, and ``--run-dir``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import default_collate

from lpft.analysis.report import DOCTOR_FILE
from lpft.cli.main import main
from lpft.data import BuildContext, create_benchmark, lpft_home
from tests_support import OodGuard

TINY = ["--benchmark", "tiny", "--model", "builtin:tiny-test", "--device", "cpu", "--quiet"]
METHODS = {"lp", "lpft", "wise-ft", "ft"}


def doctor_json(capsys, *flags: str) -> dict:
    assert main(["doctor", *TINY, "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_doctor_never_reads_a_target_or_ood_label(capsys) -> None:
    """OOD labels are served as values that raise on any use, ID test raises on any read."""
    OodGuard.labels_allowed = False
    document = doctor_json(
        capsys,
        "--set",
        "benchmark_options.guard_ood=true",
        "--set",
        "benchmark_options.forbid_id_test=true",
    )
    assert document["ood_labels_used"] is False
    assert document["targets"] == {"shifted": 48}
    assert document["recommendation"] in METHODS
    # The guard bites: the same OOD examples, batched as an evaluation would batch them, raise.
    benchmark = create_benchmark(
        "tiny", {"guard_ood": True}, BuildContext(None, lpft_home(), False)
    )
    with pytest.raises((AssertionError, TypeError)):
        default_collate([benchmark.ood["shifted"].dataset[0]])


def write_target_folder(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "batch").mkdir(parents=True)
    for index in range(count):
        pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(root / "batch" / f"{index}.png")
    return root


def test_doctor_json_schema_on_a_folder_of_target_images(capsys, tmp_path: Path) -> None:
    target = write_target_folder(tmp_path / "photos", 9)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    document = doctor_json(capsys, "--target", str(target), "--run-dir", str(run_dir))
    assert json.loads((run_dir / DOCTOR_FILE).read_text()) == document
    assert document["schema"] == "lpft-doctor-v1"
    assert (document["benchmark"], document["model"]) == ("tiny", "builtin:tiny-test")
    assert document["targets"] == {"photos": 9}
    assert document["recommendation"] in METHODS
    assert 0.5 <= document["confidence"] <= 1.0
    assert document["ood_labels_used"] is False and document["target_labels_used"] is False
    assert set(document["probes"]) == METHODS
    assert document["probes"]["ft"]["epochs"] == 1  # half the benchmark's 2 epochs
    assert document["probes"]["ft"]["hparams"] == {"lr": 0.01}
    assert set(document["estimated_cost_seconds"]) == METHODS
    assert all(seconds > 0 for seconds in document["estimated_cost_seconds"].values())
    keys = [item["key"] for item in document["indicators"]]
    assert keys[0] == "distortion_asymmetry"
    assert {"id_gain", "coverage:photos", "agreement:photos"} <= set(keys)
    for item in document["indicators"]:
        assert set(item) == {"key", "name", "value", "reference", "reading", "points_to"}
        assert isinstance(item["value"], float) and item["reading"]


def test_a_bad_target_folder_is_one_line_naming_it(capsys, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["doctor", *TINY, "--target", str(tmp_path / "empty")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lpft: error: --target") and "empty" in error
    assert "\n" not in error


def test_terminal_output_reads_every_indicator_and_gives_costs(capsys) -> None:
    assert main(["doctor", *TINY]) == 0
    out = capsys.readouterr().out
    for name in ("distortion asymmetry", "uncovered target energy (shifted)", "agreement"):
        assert name in out
    assert re.search(r"recommendation: (lp|lpft|wise-ft|ft) \(confidence \d+%\)", out)
    assert re.search(r"cost .*\d+ s", out)
