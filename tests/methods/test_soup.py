"""Soups average every floating-point tensor; a soup of one model is that model."""

from __future__ import annotations

from pathlib import Path

import torch

from lpft.methods import soup
from lpft.methods.base import Available, Candidate, Network, Selected
from lpft.methods.soup import Soup, SoupOptions, average
from lpft.models.backbone import Classifier
from lpft.run.context import RunContext
from tests_support import logits_on

LRS = [0.01, 0.02, 0.03]


def fine_tuned(ctx: RunContext, seed: int, scale: float) -> Classifier:
    """A stand-in for a fine-tuned network: every float tensor moved by ``scale``."""
    model = Classifier(ctx.fresh_backbone(), ctx.benchmark.num_classes)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(scale * torch.randn(value.shape, generator=generator).abs())
    return model.eval()


def pool(models: list[Classifier], id_vals: list[float]) -> dict[str, Selected]:
    available = [
        Available(Candidate({"lr": lr}, v, "model", "best.pt"), lambda m=m: Network(m))
        for lr, m, v in zip(LRS, models, id_vals, strict=False)
    ]
    best = max(range(len(models)), key=lambda i: id_vals[i])
    return {"ft": Selected(available[best].candidate, Network(models[best]), available)}


def test_a_soup_of_one_model_is_that_model(tiny_context: RunContext, tmp_path: Path) -> None:
    model = fine_tuned(tiny_context, seed=3, scale=0.1)
    method = Soup()
    candidates = method.fit(tiny_context, SoupOptions(), {}, 0, tmp_path, pool([model], [0.5]))
    assert [c.hparams["recipe"] for c in candidates] == ["uniform", "greedy"]
    expected_logits = logits_on(tiny_context, model)
    for candidate, predictor in zip(
        candidates, method.predictors(tiny_context, tmp_path, candidates), strict=True
    ):
        state = predictor.model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert torch.equal(logits_on(tiny_context, predictor.model), expected_logits)
        assert candidate.info["ingredients"] == [{"lr": 0.01}]


def test_under_torchrun_only_rank_0_writes_the_soups(
    tiny_context: RunContext, tmp_path: Path, monkeypatch
) -> None:
    required = pool([fine_tuned(tiny_context, seed=s, scale=0.1) for s in (3, 4)], [0.5, 0.6])
    monkeypatch.setattr(soup, "is_main_process", lambda: False)  # rank 1 of 2
    on_rank_1 = Soup().fit(tiny_context, SoupOptions(), {}, 0, tmp_path, required)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert Soup().fit(tiny_context, SoupOptions(), {}, 0, tmp_path, required) == on_rank_1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["soup-greedy.pt", "soup-uniform.pt"]


def test_greedy_soup_starts_from_the_best_by_id_val_and_never_loses_id_val(
    tiny_context: RunContext, tmp_path: Path
) -> None:
    models = [fine_tuned(tiny_context, seed=s, scale=x) for s, x in [(4, 3.0), (5, 0.05), (6, 0.1)]]
    scores = [0.1, 0.9, 0.5]
    candidates = Soup().fit(tiny_context, SoupOptions(), {}, 0, tmp_path, pool(models, scores))
    uniform, greedy = candidates
    assert uniform.info["ingredients"] == [{"lr": 0.02}, {"lr": 0.03}, {"lr": 0.01}]
    assert greedy.info["ingredients"][0] == {"lr": 0.02}
    alone = Soup().fit(
        tiny_context,
        SoupOptions(recipes=["greedy"]),
        {},
        0,
        tmp_path / "one",
        pool([models[1]], [0.9]),
    )[0]
    assert greedy.id_val >= alone.id_val


def test_average_is_the_elementwise_mean_of_float_tensors() -> None:
    states = [
        {"w": torch.tensor([1.0, 4.0]), "n": torch.tensor(2)},
        {"w": torch.tensor([3.0, 0.0]), "n": torch.tensor(5)},
    ]
    averaged = average(states)
    assert torch.equal(averaged["w"], torch.tensor([2.0, 2.0]))
    assert averaged["n"] == 2
