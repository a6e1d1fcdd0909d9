"""Training data whose batches depend on (seed, epoch, position) only, never on the workers."""

from __future__ import annotations

from pathlib import Path

import torch

from lpft.data import BuildContext, build_transform, create_benchmark
from lpft.models import Classifier, create_backbone
from lpft.training.loaders import TransformedDataset, eval_loader
from lpft.training.trainer import FineTuner, TrainingOptions

CPU = torch.device("cpu")


def augmented_tiny(tmp_path: Path):
    benchmark = create_benchmark("tiny", {}, BuildContext(None, tmp_path, False))
    backbone = create_backbone("builtin:tiny-test")
    spec = backbone.input_spec
    train = TransformedDataset(benchmark.id_train, build_transform("rrc_flip", spec, True), seed=3)
    val = TransformedDataset(benchmark.id_val, build_transform("rrc_flip", spec, False))
    return backbone, train, val


def fine_tuned(tmp_path: Path, num_workers: int) -> dict[str, torch.Tensor]:
    backbone, train, val = augmented_tiny(tmp_path)
    torch.manual_seed(0)
    model = Classifier(backbone, 4)
    options = TrainingOptions(epochs=3, batch_size=8)
    cell = tmp_path / f"workers{num_workers}"
    FineTuner(
        model, options, 0.05, train, eval_loader(val, 64, 0), CPU, cell, 0, num_workers
    ).fit()
    return model.state_dict()


def test_loader_workers_do_not_change_augmented_training(tmp_path: Path) -> None:
    """Persistent workers see every epoch's augmentation, not only the first one's."""
    alone, with_workers = fine_tuned(tmp_path, 0), fine_tuned(tmp_path, 2)
    for name, value in alone.items():
        assert torch.equal(value, with_workers[name]), name
