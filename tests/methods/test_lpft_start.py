"""LP-FT really starts from the selected LP head: its first logits equal LP's."""

from __future__ import annotations

import torch

from lpft.config import resolve_config
from lpft.data import BuildContext, build_transform, create_benchmark
from lpft.methods.lp import load_heads
from lpft.models import create_backbone
from lpft.run.runner import Runner
from lpft.training.features import forward_split
from lpft.training.loaders import TensorImageDataset, TransformedDataset, eval_loader
from lpft.training.logreg import predict_logits
from lpft.training.trainer import FineTuner


def lp_logits_on_id_val(runner: Runner, weight: torch.Tensor, bias: torch.Tensor):
    """LP's logits on ID val, computed from scratch: pretrained features times the LP head."""
    config = runner.config
    backbone = create_backbone(config.model)
    benchmark = create_benchmark(
        config.benchmark, config.benchmark_options, BuildContext(None, None, False)
    )
    transform = build_transform("none", backbone.input_spec, train=False)
    val = TensorImageDataset.from_dataset(TransformedDataset(benchmark.id_val, transform))
    features = forward_split(backbone, eval_loader(val, 64, 0), torch.device("cpu")).features
    return predict_logits(features, weight, bias).float()


def test_lpft_first_logits_equal_the_lp_solution(tiny_overrides: dict, monkeypatch) -> None:
    tiny_overrides["methods"] = {"lp": {"C": [1e-2, 1.0]}, "lpft": {"epochs": 1}}
    tiny_overrides["seeds"] = 1
    captured = {}
    original_fit = FineTuner.fit

    def fit_recording_start(self: FineTuner):
        start = forward_split(self.model.backbone, self.val_loader, self.device, self.model.head)
        captured["logits"] = start.logits
        return original_fit(self)

    monkeypatch.setattr(FineTuner, "fit", fit_recording_start)
    runner = Runner(resolve_config(overrides=tiny_overrides), quiet=True)
    results = runner.run()

    lp_cell = runner.cells["lp"][0]
    selected_c = results["methods"]["lp"]["seeds"][0]["selected"]["hparams"]["C"]
    index = [c.hparams["C"] for c in lp_cell.candidates].index(selected_c)
    weights, biases = load_heads(lp_cell.directory)
    weight, bias = weights[index], biases[index]
    expected = lp_logits_on_id_val(runner, weight, bias)
    torch.testing.assert_close(captured["logits"], expected, rtol=1e-4, atol=1e-4)
