"""Optional experiment tracking: TensorBoard and MLflow (``--log tensorboard,mlflow``).

Each finished cell is logged once its metrics exist: its hyperparameters, the per-epoch history
its candidates recorded (training loss and accuracy, ID val accuracy), and the final ID val,
ID test and OOD accuracies of each candidate. At the end of a run the report is attached as an
artifact. Both trackers write into the run directory by default (``RUN/tensorboard``,
``RUN/mlruns``), so nothing needs a server or the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from lpft.config import TrackingOptions
from lpft.optional import import_optional
from lpft.run.rundir import CellRecord


def cell_name(key: str, cell: CellRecord) -> str:
    seed = "shared" if cell.seed is None else f"seed{cell.seed}"
    return f"{key}/{seed}/{cell.directory.name}"


def candidate_metrics(candidate_id_val: float, metrics: dict[str, Any]) -> dict[str, float]:
    flat = {"id_val": candidate_id_val}
    if "id_test" in metrics:
        flat["id_test"] = metrics["id_test"]
    for split, value in metrics.get("ood", {}).items():
        flat[f"ood/{split}"] = value
    return flat


def report_files(run_dir: Path) -> list[Path]:
    names = ("report.md", "report.html", "summary.md", "results.json")
    return [path for name in names if (path := Path(run_dir) / name).is_file()]


class Tracker(Protocol):
    def cell_finished(self, key: str, cell: CellRecord) -> None: ...

    def finish(self, run_dir: Path) -> None: ...


class NoTracker:
    def cell_finished(self, key: str, cell: CellRecord) -> None:
        return None

    def finish(self, run_dir: Path) -> None:
        return None


class TensorBoardTracker:
    """One event directory per cell under ``RUN/tensorboard``."""

    def __init__(self, run_dir: Path) -> None:
        tensorboard = import_optional("torch.utils.tensorboard", "tensorboard")
        self.writer_class = tensorboard.SummaryWriter
        self.root = Path(run_dir) / "tensorboard"

    def cell_finished(self, key: str, cell: CellRecord) -> None:
        with self.writer_class(str(self.root / cell_name(key, cell))) as writer:
            for index, candidate in enumerate(cell.candidates):
                for epoch in candidate.info.get("history", []):
                    for name in ("train_loss", "train_acc", "id_val"):
                        writer.add_scalar(f"epoch/{name}", epoch[name], epoch["epoch"])
                final = candidate_metrics(candidate.id_val, (cell.metrics or [{}])[index])
                hparams = {k: float(v) for k, v in candidate.hparams.items()}
                hparams["seed"] = -1 if cell.seed is None else cell.seed
                writer.add_hparams(
                    hparams,
                    {f"final/{k}": v for k, v in final.items()},
                    run_name=f"candidate{index}",
                )

    def finish(self, run_dir: Path) -> None:
        summary = Path(run_dir) / "summary.md"
        if summary.is_file():
            with self.writer_class(str(self.root / "run")) as writer:
                writer.add_text("summary", summary.read_text())


class MlflowTracker:
    """One MLflow run per cell, nested runs per candidate; the report as the last artifact."""

    def __init__(self, options: TrackingOptions, run_dir: Path) -> None:
        self.mlflow = import_optional("mlflow", "mlflow")
        uri = options.mlflow_uri
        if uri is None:
            # MLflow 3 keeps its file store only on request; it is what works offline with
            # nothing but mlflow-skinny installed.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (Path(run_dir).resolve() / "mlruns").as_uri()
        self.mlflow.set_tracking_uri(uri)
        self.mlflow.set_experiment(options.mlflow_experiment)
        self.run_name = Path(run_dir).name

    def cell_finished(self, key: str, cell: CellRecord) -> None:
        mlflow = self.mlflow
        with mlflow.start_run(run_name=cell_name(key, cell)):
            mlflow.set_tags({"lpft.run": self.run_name, "lpft.method": key})
            mlflow.log_params({"method": key, "seed": cell.seed, **cell.hparams})
            for index, candidate in enumerate(cell.candidates):
                with mlflow.start_run(run_name=f"candidate{index}", nested=True):
                    mlflow.log_params(candidate.hparams)
                    for epoch in candidate.info.get("history", []):
                        mlflow.log_metrics(
                            {f"epoch_{n}": epoch[n] for n in ("train_loss", "train_acc", "id_val")},
                            step=epoch["epoch"],
                        )
                    metrics = (cell.metrics or [{}])[index]
                    final = candidate_metrics(candidate.id_val, metrics)
                    mlflow.log_metrics({k.replace("/", "_"): v for k, v in final.items()})

    def finish(self, run_dir: Path) -> None:
        with self.mlflow.start_run(run_name=f"{self.run_name}: report"):
            self.mlflow.set_tag("lpft.run", self.run_name)
            for path in report_files(run_dir):
                self.mlflow.log_artifact(str(path))


class Trackers:
    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def cell_finished(self, key: str, cell: CellRecord) -> None:
        for tracker in self.trackers:
            tracker.cell_finished(key, cell)

    def finish(self, run_dir: Path) -> None:
        for tracker in self.trackers:
            tracker.finish(run_dir)


def open_tracker(options: TrackingOptions, run_dir: Path, enabled: bool = True) -> Tracker:
    """The trackers ``options.log`` names (none on processes that do not write)."""
    if not enabled or not options.log:
        return NoTracker()
    trackers: list[Tracker] = []
    for name in options.log:
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(run_dir))
        else:
            trackers.append(MlflowTracker(options, run_dir))
    return Trackers(trackers)
