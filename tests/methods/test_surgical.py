"""surgical fine-tuning trains one block (and the head): every other block stays bit-identical;
the block is a sweep axis, selected on ID val, or fixed by an option."""

from __future__ import annotations

import pytest
import torch

from lpft.errors import ConfigError
from lpft.methods.surgical import SurgicalOptions, block_names
from lpft.models import create_backbone
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
