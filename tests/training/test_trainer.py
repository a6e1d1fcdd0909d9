"""The fine-tuning loop: LP-head start, BatchNorm modes, divergence, exact resume."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from lpft.data import BuildContext, build_transform, create_benchmark
from lpft.errors import TrainingDivergedError
from lpft.methods.finetune import FineTuneOptions
from lpft.methods.lpft import LPFTOptions
from lpft.models import Classifier, create_backbone
from lpft.training.features import forward_split
from lpft.training.loaders import TensorImageDataset, TransformedDataset, eval_loader
from lpft.training.logreg import LogisticRegressionPath
from lpft.training.trainer import LAST, FineTuner

CPU = torch.device("cpu")


def tiny_data(tmp_path: Path):
    benchmark = create_benchmark("tiny", {}, BuildContext(None, tmp_path, False))
    backbone = create_backbone("builtin:tiny-test")
    transform = build_transform("none", backbone.input_spec, train=False)

    def prepared(dataset):
        return TensorImageDataset.from_dataset(TransformedDataset(dataset, transform))

    return backbone, prepared(benchmark.id_train), prepared(benchmark.id_val)


def lp_model(backbone, train) -> Classifier:
    features = forward_split(backbone, eval_loader(train, 64, 0), CPU)
    solution = LogisticRegressionPath(features.features, features.labels, 4).fit_path([1.0])[0]
    model = Classifier(copy.deepcopy(backbone), 4)
    with torch.no_grad():
        model.head.weight.copy_(solution.weight.float())
        model.head.bias.copy_(solution.bias.float())
    return model


def logits_of(model: Classifier, dataset) -> torch.Tensor:
    outputs = forward_split(model.backbone, eval_loader(dataset, 64, 0), CPU, head=model.head)
    return outputs.logits


def running_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def trainer(model, options, lr, train, val, cell_dir, **kwargs) -> FineTuner:
    return FineTuner(model, options, lr, train, eval_loader(val, 64, 0), CPU, cell_dir, 0, **kwargs)


def test_lr_zero_from_the_lp_head_keeps_lp_predictions(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    model = lp_model(backbone, train)
    before = logits_of(model, val)
    options = LPFTOptions(epochs=2, batch_size=8)
    trainer(model, options, 0.0, train, val, tmp_path / "cell").fit()
    torch.testing.assert_close(logits_of(model, val), before, rtol=0, atol=1e-6)


def test_eval_mode_batchnorm_keeps_running_statistics(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    model = lp_model(backbone, train)
    before = running_stats(model)
    trainer(model, LPFTOptions(epochs=1, batch_size=8), 1e-3, train, val, tmp_path / "c").fit()
    after = running_stats(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_train_mode_batchnorm_updates_running_statistics(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    model = Classifier(copy.deepcopy(backbone), 4)
    before = running_stats(model)
    options = FineTuneOptions(epochs=1, batch_size=8, batchnorm="train")
    trainer(model, options, 1e-3, train, val, tmp_path / "c").fit()
    after = running_stats(model)
    assert any(not torch.equal(before[k], after[k]) for k in before if "mean" in k)


def test_non_finite_loss_stops_the_cell(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    model = Classifier(copy.deepcopy(backbone), 4)
    options = FineTuneOptions(epochs=3, batch_size=8)
    with pytest.raises(TrainingDivergedError, match="non-finite loss"):
        trainer(model, options, 1e12, train, val, tmp_path / "c").fit()


class Interrupt(Exception):
    pass


def test_resume_mid_epoch_is_bitwise_identical(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    options = FineTuneOptions(epochs=3, batch_size=8, checkpoint_every_steps=2)

    def fresh_model() -> Classifier:
        torch.manual_seed(7)
        return Classifier(copy.deepcopy(backbone), 4)

    reference_model = fresh_model()
    reference = trainer(reference_model, options, 0.05, train, val, tmp_path / "a").fit()

    def stop_after(step: int, _total: int) -> None:
        if step == 9:
            raise Interrupt

    with pytest.raises(Interrupt):
        trainer(fresh_model(), options, 0.05, train, val, tmp_path / "b", on_step=stop_after).fit()
    assert (tmp_path / "b" / LAST).is_file()
    resumed_model = fresh_model()
    resumed = trainer(resumed_model, options, 0.05, train, val, tmp_path / "b").fit()

    assert [vars(r) for r in resumed.history] == [vars(r) for r in reference.history]
    assert resumed.best_epoch == reference.best_epoch
    for key, value in reference_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    again = trainer(fresh_model(), options, 0.05, train, val, tmp_path / "b").fit()
    assert [vars(r) for r in again.history] == [vars(r) for r in reference.history]


def test_fp16_trains_with_loss_scaling_and_resumes_the_scale(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    model = Classifier(copy.deepcopy(backbone), 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = FineTuneOptions(epochs=1, batch_size=8)
    fp16 = trainer(model, options, 1e-2, train, val, tmp_path / "c", autocast_dtype=torch.float16)
    outcome = fp16.fit()
    assert fp16.scaler.is_enabled()
    assert 0.0 <= outcome.best_val <= 1.0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    saved = torch.load(tmp_path / "c" / LAST, weights_only=True)
    assert saved["scaler"]["scale"] == fp16.scaler.get_scale()
    fp32 = trainer(
        Classifier(copy.deepcopy(backbone), 4), options, 1e-2, train, val, tmp_path / "d"
    )
    assert not fp32.scaler.is_enabled()


def nan_after(steps: int):
    """A loss term that is 0 for ``steps`` steps, then NaN (a late divergence)."""
    calls = {"n": 0}

    def term(_model: Classifier) -> torch.Tensor:
        calls["n"] += 1
        return torch.tensor(0.0 if calls["n"] <= steps else float("nan"))

    return term


def test_late_divergence_keeps_the_best_epoch_so_far(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    model = Classifier(copy.deepcopy(backbone), 4)
    options = FineTuneOptions(epochs=4, batch_size=8)
    steps_per_epoch = -(-len(train) // 8)
    cell = tmp_path / "c"
    outcome = trainer(
        model, options, 1e-3, train, val, cell, loss_term=nan_after(2 * steps_per_epoch + 1)
    ).fit()
    assert outcome.diverged_at_epoch == 3
    assert [r.epoch for r in outcome.history] == [1, 2]
    assert outcome.best_epoch in (1, 2)
    assert outcome.best_val == max(r.id_val for r in outcome.history)
    best = torch.load(cell / "best.pt", weights_only=True)
    assert best["epoch"] == outcome.best_epoch
    assert all(torch.isfinite(v).all() for v in best["model"].values() if v.is_floating_point())
    resumed = trainer(Classifier(copy.deepcopy(backbone), 4), options, 1e-3, train, val, cell)
    assert resumed.fit().diverged_at_epoch == 3


def test_on_nonfinite_fail_keeps_failing_the_whole_cell(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    options = FineTuneOptions(epochs=4, batch_size=8, on_nonfinite="fail")
    steps_per_epoch = -(-len(train) // 8)
    model = Classifier(copy.deepcopy(backbone), 4)
    late = nan_after(2 * steps_per_epoch + 1)
    with pytest.raises(TrainingDivergedError, match="non-finite loss in epoch 3"):
        trainer(model, options, 1e-3, train, val, tmp_path / "c", loss_term=late).fit()


def test_fit_records_training_throughput(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    model = Classifier(backbone, 4)
    options = FineTuneOptions(epochs=2, batch_size=8)
    outcome = trainer(model, options, 0.01, train, val, tmp_path).fit()
    assert outcome.epoch_seconds > 0
    # 48 images in batches of 8: every image trains once per epoch.
    assert outcome.images_per_second == pytest.approx(48 / outcome.epoch_seconds)
    assert outcome.epoch_seconds * 2 <= outcome.seconds


def test_progress_can_show_images_per_second_during_an_epoch(tmp_path: Path) -> None:
    backbone, train, val = tiny_data(tmp_path)
    speeds: list[float] = []
    options = FineTuneOptions(epochs=1, batch_size=8)
    model = Classifier(backbone, 4)
    tuner = trainer(model, options, 0.01, train, val, tmp_path)
    tuner.on_step = lambda _done, _total: speeds.append(tuner.images_per_second())
    tuner.fit()
    assert len(speeds) == 6
    assert all(speed > 0 for speed in speeds)
