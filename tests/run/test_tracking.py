"""``--log tensorboard,mlflow``: each cell's hyperparameters, epochs and final metrics, and the
report as an artifact, in TensorBoard event files and an offline MLflow file store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lpft.config import resolve_config
from lpft.run.runner import Runner


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tracked") / "run"
    config = resolve_config(
        overrides={
            "benchmark": "tiny",
            "model": "builtin:tiny-test",
            "seeds": 1,
            "out": str(out),
            "device": "cpu",
            "methods": {"ft": {}},
            "tracking": {"log": "tensorboard,mlflow"},
        }
    )
    return out, Runner(config, quiet=True).run()


def selected_ft(results: dict) -> dict:
    return results["methods"]["ft"]["seeds"][0]["selected"]


def test_tensorboard_gets_each_epoch_of_each_cell(tracked) -> None:
    out, results = tracked
    events = EventAccumulator(str(out / "tensorboard" / "ft" / "seed0" / "lr=0.01"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("epoch/id_val")]
    history = selected_ft(results)["history"]
    assert logged == [(h["epoch"], pytest.approx(h["id_val"])) for h in history]


def test_mlflow_file_store_gets_params_metrics_and_the_report(tracked) -> None:
    out, results = tracked
    mlflow.set_tracking_uri((out / "mlruns").as_uri())
    runs = mlflow.search_runs(experiment_names=["lpft"], output_format="list")
    by_name = {run.info.run_name: run for run in runs}
    assert by_name["ft/seed0/lr=0.01"].data.params == {"method": "ft", "seed": "0", "lr": "0.01"}
    candidate = by_name["candidate0"]
    chosen = selected_ft(results)
    assert candidate.data.metrics["id_test"] == pytest.approx(chosen["id_test"])
    assert candidate.data.metrics["ood_shifted"] == pytest.approx(chosen["ood"]["shifted"])
    history = mlflow.MlflowClient().get_metric_history(candidate.info.run_id, "epoch_id_val")
    assert [(m.step, m.value) for m in history] == [
        (h["epoch"], pytest.approx(h["id_val"])) for h in chosen["history"]
    ]
    report_run = by_name[f"{out.name}: report"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(report_run.info.run_id)}
    assert {"report.md", "summary.md", "results.json"} <= artifacts
