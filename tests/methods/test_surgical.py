"""surgical fine-tuning trains one block (and the head): every other block stays bit-identical;
the block is a sweep axis, selected on ID val, or fixed by an option."""

from __future__ import annotations

import pytest
import torch

from lpft.config import resolve_config
from lpft.errors import ConfigError
from lpft.methods.base import Candidate, LinearHead, Selected
from lpft.methods.surgical import Surgical, SurgicalOptions, block_names
from lpft.models import Classifier, create_backbone
from lpft.run.runner import Runner
from tests_support import best_state, pretrained_state


def test_every_other_block_is_bit_identical(fine_tuning_run: Runner) -> None:
    start = pretrained_state(fine_tuning_run)
    blocks = list(create_backbone(fine_tuning_run.config.model).blocks())
    candidates = fine_tuning_run.cells["surgical"][0].candidates
    assert [c.hparams["block"] for c in candidates] == blocks
    for candidate in candidates:
        state = best_state(fine_tuning_run, "surgical", candidate.artifact)
        trained = f"backbone.{'stem' if candidate.hparams['block'] == 'stem' else 'stages.'}"
        trained += (
            ""
            if candidate.hparams["block"] == "stem"
            else str(blocks.index(str(candidate.hparams["block"])) - 1)
        )
        for key, value in start.items():
            inside = key.startswith(trained + ".")
            if not inside:
                assert torch.equal(state[key], value), (candidate.hparams, key)
            elif value.is_floating_point() and "running" not in key:
                assert not torch.equal(state[key], value), (candidate.hparams, key)


def test_selected_candidate_names_its_block(fine_tuning_run: Runner) -> None:
    results = fine_tuning_run.rundir.results_path.read_text()
    assert '"block": "' in results


def test_fixed_block_must_be_a_block_of_the_backbone() -> None:
    backbone = create_backbone("builtin:tiny-test")
    assert block_names(backbone, SurgicalOptions(block="stage2")) == ["stage2"]
    with pytest.raises(ConfigError, match="stem, stage1"):
        block_names(backbone, SurgicalOptions(block="stage9"))


def test_a_diverging_block_fails_its_own_candidate_not_the_cell(
    tiny_overrides: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-finite loss in the first epoch of one block leaves that block out; the other blocks
    of the same learning rate stay candidates, and the failure is recorded with them."""

    def nan_for_stage1(self, model, options, hparams):
        if hparams["block"] == "stage1":
            return lambda _model: torch.tensor(float("nan"))
        return None

    monkeypatch.setattr(Surgical, "loss_term", nan_for_stage1)
    tiny_overrides.update(seeds=1)
    tiny_overrides["methods"] = {"surgical": {"lrs": [0.01], "epochs": 1, "batch_size": 8}}
    results = Runner(resolve_config(overrides=tiny_overrides), quiet=True).run()
    (cell,) = results["methods"]["surgical"]["seeds"][0]["cells"]
    blocks = list(create_backbone("builtin:tiny-test").blocks())
    assert cell["status"] == "done"
    assert [c["hparams"]["block"] for c in cell["candidates"]] == [
        b for b in blocks if b != "stage1"
    ]
    assert all("stage1" in c["failed_blocks"] for c in cell["candidates"])
    assert "non-finite" in cell["candidates"][0]["failed_blocks"]["stage1"]
    assert results["methods"]["surgical"]["seeds"][0]["selected"]["hparams"]["block"] != "stage1"


def test_head_init_lp_starts_the_head_from_the_selected_lp_head() -> None:
    options = SurgicalOptions(head_init="lp")
    assert Surgical().requirements(options) == ("lp",)
    model = Classifier(create_backbone("builtin:tiny-test"), 4)
    head = LinearHead(torch.randn(4, model.head.in_features), torch.randn(4))
    required = {"lp": Selected(Candidate({"C": 1.0}, 0.5, "head", "heads.pt"), head)}
    Surgical().start_head(model, options, required, ["a", "b", "c", "d"])
    assert torch.equal(model.head.weight.detach(), head.weight)
    assert torch.equal(model.head.bias.detach(), head.bias)
