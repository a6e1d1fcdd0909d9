"""Helpers shared by test modules (kept out of conftest so they can be imported by name)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lpft.models import create_backbone
from lpft.training.features import forward_split

if TYPE_CHECKING:
    from lpft.models.backbone import Classifier
    from lpft.run.context import RunContext
    from lpft.run.runner import Runner


def tiny_run_config(out: Path, methods: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """A one-seed run of ``methods`` on the tiny benchmark and backbone, on the CPU."""
    return {
        "benchmark": "tiny",
        "model": "builtin:tiny-test",
        "seeds": 1,
        "out": str(out),
        "report": False,
        "device": "cpu",
        "methods": methods,
        **settings,
    }


def concurrently(function: Callable[[], Any], copies: int) -> list[Any]:
    """Run ``copies`` calls of ``function`` in threads started together; their results."""
    results: list[Any] = []
    start = threading.Barrier(copies)

    def call() -> None:
        start.wait()
        results.append(function())

    threads = [threading.Thread(target=call) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def selected_metrics(results: dict[str, Any]) -> dict[str, list[Any]]:
    """Per method, each seed's selected hyperparameters and accuracies (no timings)."""
    return {
        key: [
            (
                s["selected"]["hparams"],
                s["selected"]["id_val"],
                s["selected"]["id_test"],
                s["selected"]["ood"],
            )
            for s in entry["seeds"]
        ]
        for key, entry in results["methods"].items()
    }


def all_candidate_metrics(results: dict[str, Any]) -> dict[str, Any]:
    """Every candidate's numbers (accuracies, distortion, per-epoch history), without timings."""
    timing = {"seconds", "train_seconds", "epoch_seconds", "images_per_second"}
    return {
        key: [
            [
                [{k: v for k, v in cand.items() if k not in timing} for cand in cell["candidates"]]
                for cell in seed["cells"]
            ]
            for seed in entry["seeds"]
        ]
        for key, entry in results["methods"].items()
    }


class ArrayImages(Dataset):
    """Grayscale uint8 arrays served as PIL images; ``guard(index)`` is called on every read."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, guard=None) -> None:
        self.images, self.labels, self.guard = images, labels, guard

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index], mode="L")
        if self.guard is None:
            return image, int(self.labels[index])
        self.guard(index)
        return image, self.guard.label(index, self.labels[index])


class OodGuard:
    """Raises when an ID test or OOD image is read while ``allowed`` is False; while
    ``labels_allowed`` is False its labels are served as ``ForbiddenLabel``s, which raise on
    any use (conversion, comparison, hashing, collation into a batch)."""

    allowed = True
    labels_allowed = True

    def __call__(self, index: int) -> None:
        if not OodGuard.allowed:
            raise AssertionError(f"test or OOD example {index} read before the evaluation phase")

    def label(self, index: int, value: Any) -> Any:
        return int(value) if OodGuard.labels_allowed else ForbiddenLabel(index)


class NeverRead:
    """A guard for a split that must not be read at all."""

    def __call__(self, index: int) -> None:
        raise AssertionError(f"example {index} of a split that must never be read was read")


class ForbiddenLabel:
    """A test or OOD label that must not be read: every way of using it raises."""

    def __init__(self, index: int) -> None:
        self._index = index

    def _read(self, *_args: Any) -> Any:
        raise AssertionError(f"the label of test or OOD example {self._index} was read")

    __int__ = __index__ = __float__ = __bool__ = __hash__ = __array__ = _read
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __format__ = _read


# --- methods: predictions and checkpoints -------------------------------------------------


def logits_on(ctx: RunContext, model: Classifier, split: str = "id_test") -> torch.Tensor:
    return forward_split(model.backbone, ctx.eval_loader(split), ctx.device, model.head).logits


def best_state(runner: Runner, key: str, artifact: str = "best.pt") -> dict[str, torch.Tensor]:
    directory: Path = runner.cells[key][0].directory
    return torch.load(directory / artifact, map_location="cpu", weights_only=True)["model"]


def pretrained_state(runner: Runner) -> dict[str, torch.Tensor]:
    backbone = create_backbone(runner.config.model)
    return {f"backbone.{k}": v for k, v in backbone.state_dict().items()}


TESTS_DIR = Path(__file__).resolve().parent


def tiny_plugin_env(site: Path) -> dict[str, str]:
    """An environment in which other processes (torchrun workers, submitit jobs, Ray workers)
    find the ``tiny`` benchmark and backbone, as an ``lpft.plugins`` entry point."""
    dist = Path(site) / "lpft_tiny_plugin-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lpft-tiny-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lpft.plugins]\ntiny = tiny_benchmark\n")
    path = os.pathsep.join([str(site), str(TESTS_DIR), *sys.path])
    return {**os.environ, "PYTHONPATH": path}
