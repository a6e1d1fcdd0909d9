"""WiSE-FT interpolates every floating-point tensor: its endpoints are exactly θ₀ and θ₁."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lpft.analysis import tables
from lpft.config import resolve_config
from lpft.errors import ConfigError
from lpft.methods import wise_ft
from lpft.methods.base import Candidate, LinearHead, Network, Selected
from lpft.methods.wise_ft import DEFAULT_BASE, WiseFT, WiseFTOptions, interpolate
from lpft.methods.wise_ft import endpoints as wise_endpoints
from lpft.models import create_backbone
from lpft.models.backbone import Classifier
from lpft.run.context import RunContext
from lpft.run.runner import Runner, plan_methods
from lpft.validation import validate_options
from model_checks import register_tiny_clip
from tests_support import logits_on


def perturbed(model: Classifier, seed: int) -> Classifier:
    """A stand-in for a fine-tuned network: every float tensor moved, BatchNorm stats too."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(0.1 * torch.randn(value.shape, generator=generator).abs())
    return model


def endpoints(ctx: RunContext) -> tuple[Classifier, Classifier, dict[str, Selected]]:
    classes = ctx.benchmark.num_classes
    generator = torch.Generator().manual_seed(1)
    head = LinearHead(
        torch.randn(classes, ctx.pretrained.feature_dim, generator=generator),
        torch.randn(classes, generator=generator),
    )
    theta0 = Classifier(ctx.fresh_backbone(), classes).eval()
    theta0.head.weight.data.copy_(head.weight)
    theta0.head.bias.data.copy_(head.bias)
    theta1 = perturbed(Classifier(ctx.fresh_backbone(), classes), seed=2).eval()
    required = {
        "lp": Selected(Candidate({"C": 1.0}, 0.5, "head", "heads.pt"), head),
        DEFAULT_BASE: Selected(
            Candidate({"lr": 0.01}, 0.5, "model", "best.pt"), Network(theta1)
        ),
    }
    return theta0, theta1, required


def test_endpoints_predict_exactly_as_theta0_and_theta1(
    tiny_context: RunContext, tmp_path: Path
) -> None:
    theta0, theta1, required = endpoints(tiny_context)
    method = WiseFT()
    options = WiseFTOptions(alphas=[0.0, 0.5, 1.0])
    candidates = method.fit(tiny_context, options, {}, 0, tmp_path, required)
    assert [c.hparams["alpha"] for c in candidates] == [0.0, 0.5, 1.0]

    at0, half, at1 = (p.model for p in method.predictors(tiny_context, tmp_path, candidates))
    assert torch.equal(logits_on(tiny_context, at0), logits_on(tiny_context, theta0))
    assert torch.equal(logits_on(tiny_context, at1), logits_on(tiny_context, theta1))
    assert not torch.equal(logits_on(tiny_context, half), logits_on(tiny_context, theta1))
    mean_key = "backbone.stem.1.running_mean"
    expected = 0.5 * theta0.state_dict()[mean_key] + 0.5 * theta1.state_dict()[mean_key]
    torch.testing.assert_close(half.state_dict()[mean_key], expected)


def test_under_torchrun_only_rank_0_writes_the_endpoints(
    tiny_context: RunContext, tmp_path: Path, monkeypatch
) -> None:
    _, _, required = endpoints(tiny_context)
    options = WiseFTOptions(alphas=[0.0, 1.0])
    monkeypatch.setattr(wise_ft, "is_main_process", lambda: False)  # rank 1 of 2
    on_rank_1 = WiseFT().fit(tiny_context, options, {}, 0, tmp_path, required)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert WiseFT().fit(tiny_context, options, {}, 0, tmp_path, required) == on_rank_1
    assert [p.name for p in tmp_path.iterdir()] == ["endpoints.pt"]


def test_interpolation_is_exact_at_the_ends_and_linear_between() -> None:
    theta0 = {"w": torch.tensor([1.0, -2.0]), "n": torch.tensor(3)}
    theta1 = {"w": torch.tensor([3.0, 2.0]), "n": torch.tensor(7)}
    assert torch.equal(interpolate(theta0, theta1, 0.0)["w"], theta0["w"])
    assert torch.equal(interpolate(theta0, theta1, 1.0)["w"], theta1["w"])
    assert torch.equal(interpolate(theta0, theta1, 0.25)["w"], torch.tensor([1.5, -1.0]))
    assert interpolate(theta0, theta1, 0.25)["n"] == 7


def test_options_refuse_alphas_outside_the_unit_interval_and_a_linear_base() -> None:
    with pytest.raises(ConfigError, match="alphas"):
        validate_options(WiseFTOptions, {"alphas": [0.5, 1.5]}, "config")
    with pytest.raises(ConfigError, match="base"):
        validate_options(WiseFTOptions, {"base": "lp"}, "config")
    assert WiseFT().requirements(WiseFTOptions(base="lpft")) == ("lp", "lpft")


def candidate_at(entry: dict, alpha: float) -> dict:
    (cell,) = entry["seeds"][0]["cells"]
    return next(c for c in cell["candidates"] if c["hparams"]["alpha"] == alpha)


def test_alpha_ends_are_theta0_and_the_base_fine_tuned_from_it(tiny_overrides: dict) -> None:
    """α = 0 predicts as pretrained + the selected LP head, α = 1 as the base's selected
    fine-tune, which started from that head; endpoints and the fixed α = 0.5 row are recorded."""
    tiny_overrides.update(
        seeds=1,
        methods={
            "lp": {"C": [1e-2, 1.0]},
            DEFAULT_BASE: {"head_init": "lp"},
            "wise-ft": {"alphas": [0.0, 0.5, 1.0]},
        },
    )
    results = Runner(resolve_config(quick=True, overrides=tiny_overrides), quiet=True).run()
    methods = results["methods"]
    lp, base = methods["lp"]["seeds"][0]["selected"], methods[DEFAULT_BASE]["seeds"][0]["selected"]
    wise = methods["wise-ft"]
    for alpha, endpoint in ((0.0, lp), (1.0, base)):
        candidate = candidate_at(wise, alpha)
        assert candidate["id_val"] == endpoint["id_val"]
        assert candidate["scores"] == endpoint["scores"]
    assert candidate_at(wise, 0.5)["endpoints"] == {
        "theta0": {"backbone": "pretrained", "head": "lp", "hparams": lp["hparams"]},
        "theta1": {
            "method": DEFAULT_BASE,
            "hparams": base["hparams"],
            "best_epoch": base["best_epoch"],
        },
        "theta1_init": "lp",
    }
    assert wise["axis_bounds"] == {"alpha": [0.0, 1.0]}
    assert not any("alpha=" in note for note in tables.warnings(results))
    fixed = methods["wise-ft@fixed"]
    assert not fixed["hidden"]
    assert fixed["seeds"][0]["selected"]["hparams"] == {"alpha": 0.5}
    assert fixed["seeds"][0]["selected"]["scores"] == candidate_at(wise, 0.5)["scores"]


def test_an_unlisted_base_starts_from_theta0_and_a_listed_one_must(tiny_overrides: dict) -> None:
    tiny_overrides["methods"] = ["lp", "wise-ft"]
    config = resolve_config(overrides=tiny_overrides)
    assert config.method_options(DEFAULT_BASE).head_init == "lp"
    assert list(config.methods) == ["lp", "wise-ft", "wise-ft@fixed"]
    hidden = [p.key for p in plan_methods(config) if p.hidden]
    assert hidden == [DEFAULT_BASE]

    tiny_overrides["methods"] = {"lp": {}, "ft": {}, "wise-ft": {"base": "ft"}}
    with pytest.raises(ConfigError, match="base 'ft' starts from a fresh head, not from θ0"):
        resolve_config(overrides=tiny_overrides)
    tiny_overrides["methods"] = {"ft": {"head_init": "zeroshot"}, "wise-ft": {"base": "ft"}}
    with pytest.raises(ConfigError, match="starts from the zero-shot head"):
        resolve_config(overrides=tiny_overrides)


def test_a_zeroshot_theta0_is_the_clip_backbone_with_its_zeroshot_head(tmp_path: Path) -> None:
    classes = ["cat", "dog", "owl"]
    backbone = create_backbone(f"openclip:{register_tiny_clip(tmp_path)}?weights=random")
    ctx = SimpleNamespace(
        fresh_backbone=lambda: copy.deepcopy(backbone),
        benchmark=SimpleNamespace(num_classes=len(classes), classes=classes),
    )
    options = WiseFTOptions(theta0="zeroshot")
    assert WiseFT().requirements(options) == (DEFAULT_BASE,)
    assert WiseFT().requirement_options(options) == {DEFAULT_BASE: {"head_init": "zeroshot"}}
    theta1 = Classifier(copy.deepcopy(backbone), len(classes))
    required = {
        DEFAULT_BASE: Selected(Candidate({"lr": 0.1}, 0.5, "model", "best.pt"), Network(theta1))
    }
    theta0, _ = wise_endpoints(ctx, options, required)
    weight, bias = backbone.zeroshot_head(classes)
    assert torch.equal(theta0["head.weight"], weight)
    assert torch.equal(theta0["head.bias"], bias)
