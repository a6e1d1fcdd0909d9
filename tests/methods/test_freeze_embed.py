"""freeze-embed leaves the stem bit-identical (BatchNorm statistics included) while the rest
trains; a backbone that does not name its embedding is refused clearly."""

from __future__ import annotations

import pytest
import torch

from lpft.config import resolve_config
from lpft.errors import ConfigError
from lpft.methods.freeze_embed import FreezeEmbed, FreezeEmbedOptions
from lpft.models.backbone import Backbone
from lpft.run.runner import Runner, plan_methods
from tests_support import best_state, pretrained_state


def test_stem_is_bit_identical_and_the_rest_trains(fine_tuning_run: Runner) -> None:
    state, start = best_state(fine_tuning_run, "freeze-embed"), pretrained_state(fine_tuning_run)
    stem = [k for k in start if k.startswith("backbone.stem.")]
    assert any("running_mean" in k for k in stem)
    assert all(torch.equal(state[k], start[k]) for k in stem)
    rest = [k for k in start if not k.startswith("backbone.stem.") and start[k].is_floating_point()]
    assert sum(not torch.equal(state[k], start[k]) for k in rest) == len(rest)


def test_lp_start_requires_lp(tiny_overrides: dict) -> None:
    assert FreezeEmbed().requirements(FreezeEmbedOptions()) == ()
    tiny_overrides["methods"] = {"freeze-embed": {"head_init": "lp"}}
    plan = plan_methods(resolve_config(overrides=tiny_overrides))
    assert [(p.key, p.hidden) for p in plan] == [("lp", True), ("freeze-embed", False)]


def test_backbone_without_embedding_names_is_refused() -> None:
    class Anonymous(Backbone):
        pass

    with pytest.raises(ConfigError, match="Anonymous"):
        Anonymous().embedding_parameters()
