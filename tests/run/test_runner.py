"""End-to-end runs on the tiny benchmark: protocol, results, resume, selection hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpft.config import resolve_config
from lpft.errors import ConfigError, LpftError, RunLockedError
from lpft.io import run_lock
from lpft.run.runner import Runner
from tests_support import OodGuard, selected_metrics


def run(overrides: dict, **kwargs) -> dict:
    return Runner(resolve_config(overrides=overrides), quiet=True, **kwargs).run()


def test_run_writes_results_config_and_summary(tiny_overrides: dict) -> None:
    results = run(tiny_overrides)
    out = Path(tiny_overrides["out"])
    assert (out / "config.yaml").is_file() and (out / "summary.md").is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "complete"
    for method in ("lp", "ft", "lpft"):
        entry = saved["methods"][method]
        assert len(entry["seeds"]) == 2
        for seed in entry["seeds"]:
            chosen = seed["selected"]
            assert 0.0 <= chosen["id_test"] <= 1.0
            assert set(chosen["ood"]) == {"shifted"}
    assert results["methods"]["lpft"]["describe"]["batchnorm"] == "eval"
    assert results["methods"]["ft"]["describe"]["batchnorm"] == "train"
    assert "distortion" in results["methods"]["ft"]["seeds"][0]["selected"]


def test_selection_maximises_id_validation_accuracy(tiny_overrides: dict) -> None:
    tiny_overrides["methods"]["ft"] = {"lrs": [1e-3, 1e-2, 1e-1]}
    results = run(tiny_overrides)
    for method in ("lp", "ft"):
        for seed in results["methods"][method]["seeds"]:
            candidates = [c for cell in seed["cells"] for c in cell["candidates"]]
            best = max(c["id_val"] for c in candidates)
            first_best = next(c for c in candidates if c["id_val"] == best)
            assert seed["selected"]["hparams"] == first_best["hparams"]


def test_ood_data_is_not_read_before_evaluation(tiny_overrides: dict) -> None:
    tiny_overrides["benchmark_options"] = {"guard_ood": True}
    OodGuard.allowed = False

    def on_phase(phase: str) -> None:
        OodGuard.allowed = phase == "evaluate"

    results = run(tiny_overrides, on_phase=on_phase)
    assert results["methods"]["ft"]["seeds"][0]["selected"]["ood"]["shifted"] >= 0.0


def test_selection_is_unchanged_when_ood_labels_are_scrambled(tiny_overrides: dict) -> None:
    tiny_overrides["methods"]["ft"] = {"lrs": [1e-3, 1e-2, 1e-1]}
    clean = run(tiny_overrides)
    scrambled_overrides = dict(tiny_overrides, out=tiny_overrides["out"] + "-scrambled")
    scrambled_overrides["benchmark_options"] = {"shuffle_ood_labels": True}
    scrambled = run(scrambled_overrides)
    for method in ("lp", "ft", "lpft"):
        for a, b in zip(
            clean["methods"][method]["seeds"], scrambled["methods"][method]["seeds"], strict=True
        ):
            assert a["selected"]["hparams"] == b["selected"]["hparams"]
            assert a["selected"]["id_test"] == b["selected"]["id_test"]


def test_rerun_of_a_finished_run_trains_nothing(tiny_overrides: dict, monkeypatch) -> None:
    first = run(tiny_overrides)

    def no_training(*_args, **_kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr("lpft.methods.finetune.FineTuner.fit", no_training)
    monkeypatch.setattr("lpft.methods.lp.LogisticRegressionPath.fit_path", no_training)
    second = run(tiny_overrides)
    assert selected_metrics(second) == selected_metrics(first)


def test_damaged_cell_record_is_named(tiny_overrides: dict) -> None:
    run(tiny_overrides)
    record = next(Path(tiny_overrides["out"]).glob("cells/ft/seed0/*/fit.json"))
    record.write_text('{"status": "done"}')
    with pytest.raises(LpftError, match=r"fit\.json: not a cell record .*delete"):
        run(tiny_overrides)


def test_resuming_with_a_different_config_is_refused(tiny_overrides: dict) -> None:
    run(tiny_overrides)
    changed = dict(tiny_overrides, seeds=3)
    with pytest.raises(ConfigError, match="seeds"):
        run(changed)


def test_a_run_waits_for_the_run_lock_then_gives_up(tiny_overrides: dict, monkeypatch) -> None:
    monkeypatch.setattr("lpft.run.rundir.LOCK_WAIT_SECONDS", 0.3)
    with run_lock(Path(tiny_overrides["out"])), pytest.raises(RunLockedError, match="in use"):
        run(tiny_overrides)


def test_divergent_cell_is_recorded_and_the_sweep_goes_on(tiny_overrides: dict) -> None:
    tiny_overrides["methods"]["ft"] = {"lrs": [1e-2, 1e12]}
    results = run(tiny_overrides)
    for seed in results["methods"]["ft"]["seeds"]:
        statuses = {cell["hparams"]["lr"]: cell for cell in seed["cells"]}
        assert statuses[1e12]["status"] == "failed"
        assert "non-finite loss" in statuses[1e12]["error"]
        assert statuses[1e-2]["status"] == "done"
        assert seed["selected"]["hparams"] == {"lr": 1e-2}
    assert results["methods"]["ft"]["summary"]["failed_cells"] == 2
    summary = (Path(tiny_overrides["out"]) / "summary.md").read_text()
    assert "2 failed cell(s)" in summary


def test_oracle_rows_select_on_ood_val_and_stay_apart(tiny_overrides: dict) -> None:
    tiny_overrides.update(oracle=True, benchmark_options={"ood_val": True, "guard_ood": True})
    tiny_overrides["methods"]["ft"] = {"lrs": [1e-3, 1e-2, 1e-1]}
    OodGuard.allowed = False

    def on_phase(phase: str) -> None:
        OodGuard.allowed = phase == "evaluate"

    results = run(tiny_overrides, on_phase=on_phase)
    for key in ("lp", "ft", "lpft"):
        entry = results["methods"][key]
        assert "oracle" in entry
        for seed in entry["seeds"]:
            candidates = [c for cell in seed["cells"] for c in cell["candidates"]]
            best = max(c["ood_val"]["shifted"] for c in candidates)
            first = next(c for c in candidates if c["ood_val"]["shifted"] == best)
            assert seed["oracle_selected"]["hparams"] == first["hparams"]
    summary = (Path(tiny_overrides["out"]) / "summary.md").read_text()
    main, _, oracle = summary.partition("## Oracle")
    assert oracle and "| ft (oracle) |" in oracle and "| lp (oracle) |" in oracle
    assert "(oracle)" not in main and "| ft |" in main


def test_oracle_needs_an_ood_validation_split(tiny_overrides: dict) -> None:
    tiny_overrides["oracle"] = True
    with pytest.raises(ConfigError, match="has no OOD validation split"):
        run(tiny_overrides)


def test_without_oracle_ood_val_is_never_evaluated(tiny_overrides: dict) -> None:
    tiny_overrides["benchmark_options"] = {"ood_val": True}
    tiny_overrides["methods"] = {"lp": {"C": [1e-2, 1.0]}}
    results = run(tiny_overrides)
    candidates = results["methods"]["lp"]["seeds"][0]["cells"][0]["candidates"]
    assert all("ood_val" not in c for c in candidates)
    assert "oracle" not in results["methods"]["lp"]
