"""LP's options end to end: the official solver reproduces scikit-learn, augmented features
make LP a per-seed fit that LP-FT starts from seed by seed."""

from __future__ import annotations

import re
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from lpft.analysis import tables
from lpft.config import resolve_config
from lpft.data import BuildContext, build_transform, create_benchmark
from lpft.methods.lp import load_heads
from lpft.methods.lpft import LinearProbeThenFineTune
from lpft.models import create_backbone
from lpft.run.runner import Runner
from lpft.training.features import forward_split
from lpft.training.loaders import TensorImageDataset, TransformedDataset, eval_loader

CS = [1e-3, 1e-2, 1e-1, 1.0, 10.0]


def train_features(config) -> tuple[np.ndarray, np.ndarray]:
    """ID train through the eval transform and the pretrained backbone, computed here."""
    backbone = create_backbone(config.model)
    benchmark = create_benchmark(config.benchmark, {}, BuildContext(None, None, False))
    transform = build_transform("none", backbone.input_spec, train=False)
    data = TensorImageDataset.from_dataset(TransformedDataset(benchmark.id_train, transform))
    outputs = forward_split(backbone, eval_loader(data, 64, 0), torch.device("cpu"))
    return outputs.features.double().numpy(), outputs.labels.numpy()


def test_official_solver_reproduces_sklearn_run_directly(tiny_overrides: dict) -> None:
    tiny_overrides.update(seeds=1, keep_checkpoints=True)
    tiny_overrides["methods"] = {"lp": {"C": CS, "solver": "official"}}
    runner = Runner(resolve_config(overrides=tiny_overrides), quiet=True)
    results = runner.run()
    weights, biases = load_heads(runner.cells["lp"][0].directory)

    x, y = train_features(runner.config)
    mean, std = x.mean(), x.std()
    classifier = LogisticRegression(warm_start=True, max_iter=20)
    for index, C in enumerate(CS):
        classifier.C = C
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit((x - mean) / std, y)
        coef = classifier.coef_
        np.testing.assert_allclose(weights[index].numpy(), coef / std, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(
            biases[index].numpy(),
            classifier.intercept_ - coef.sum(axis=1) * mean / std,
            rtol=1e-5,
            atol=1e-6,
        )
    entry = results["methods"]["lp"]
    assert entry["describe"]["solver"].startswith("official")
    assert {c["solver"] for c in entry["seeds"][0]["cells"][0]["candidates"]} == {"official"}
    summary = (runner.out / "summary.md").read_text()
    assert "official LP solver" in summary


def test_augmented_features_fit_lp_per_seed_and_lpft_starts_from_the_same_seed(
    tiny_overrides: dict, monkeypatch
) -> None:
    tiny_overrides["benchmark_options"] = {"augment": "rrc_flip"}
    tiny_overrides["methods"] = {
        "lp": {"C": [1e-2, 1.0], "train_features": "augmented"},
        "lpft": {"epochs": 1},
    }
    started_from = {}
    original_fit = LinearProbeThenFineTune.fit

    def recording_fit(self, ctx, options, hparams, seed, cell_dir, required):
        started_from[seed] = required["lp"].predictor.weight.clone()
        return original_fit(self, ctx, options, hparams, seed, cell_dir, required)

    monkeypatch.setattr(LinearProbeThenFineTune, "fit", recording_fit)
    runner = Runner(resolve_config(overrides=tiny_overrides), quiet=True)
    results = runner.run()

    entry = results["methods"]["lp"]
    assert entry["seed_dependent"] is True
    assert [cell.seed for cell in runner.cells["lp"]] == [0, 1]
    assert entry["summary"]["id_test"]["n"] == 2
    assert not np.isnan(entry["summary"]["id_test"]["half_width"])
    heads = {cell.seed: load_heads(cell.directory)[0] for cell in runner.cells["lp"]}
    assert not torch.equal(heads[0], heads[1]), "each seed sees its own augmented pass"
    for seed in (0, 1):
        chosen = entry["seeds"][seed]["selected"]["hparams"]["C"]
        index = [1e-2, 1.0].index(chosen)
        torch.testing.assert_close(started_from[seed], heads[seed][index])


def test_eval_features_keep_one_lp_fit_for_every_seed(tiny_overrides: dict) -> None:
    tiny_overrides["methods"] = {"lp": {"C": [1e-2, 1.0]}}
    runner = Runner(resolve_config(overrides=tiny_overrides), quiet=True)
    results = runner.run()
    assert [cell.seed for cell in runner.cells["lp"]] == [None]
    assert results["methods"]["lp"]["summary"]["id_test"]["n"] == 1


def test_an_unconverged_c_is_marked_in_the_table_and_warned_about(tiny_overrides: dict) -> None:
    tiny_overrides.update(seeds=1)
    tiny_overrides["methods"] = {"lp": {"C": [1e-3, 1e2], "max_iter": 1}}
    results = Runner(resolve_config(overrides=tiny_overrides), quiet=True).run()
    assert re.search(r"NOT CONVERGED: [^|]*C=100", tables.markdown_summary(results))
    assert any(note.startswith("lp: C=100 did not converge") for note in tables.warnings(results))

    tiny_overrides["methods"] = {"lp": {"C": [1e-3, 1e2]}}
    tiny_overrides["out"] += "-converged"
    results = Runner(resolve_config(overrides=tiny_overrides), quiet=True).run()
    assert "NOT CONVERGED" not in tables.markdown_summary(results)
    assert not any("did not converge" in note for note in tables.warnings(results))
