"""FT and LP-FT can start from the zero-shot head of a backbone with a text tower."""

from __future__ import annotations

import pytest
import torch

from lpft.errors import ConfigError
from lpft.methods.finetune import FineTune, FineTuneOptions
from lpft.methods.lpft import LinearProbeThenFineTune, LPFTOptions
from lpft.models import Classifier, create_backbone
from model_checks import register_tiny_clip

CLASSES = ["cat", "dog", "owl"]


@pytest.mark.parametrize(
    ("method", "options"), [(FineTune(), FineTuneOptions), (LinearProbeThenFineTune(), LPFTOptions)]
)
def test_zeroshot_head_init_copies_the_prompt_head(method, options, tmp_path) -> None:
    backbone = create_backbone(f"openclip:{register_tiny_clip(tmp_path)}?weights=random")
    model = Classifier(backbone, len(CLASSES))
    method.start_head(model, options(head_init="zeroshot"), {}, CLASSES)
    weight, bias = backbone.zeroshot_head(CLASSES)
    assert torch.equal(model.head.weight.detach(), weight)
    assert torch.equal(model.head.bias.detach(), bias)


def test_zeroshot_head_init_needs_a_text_tower() -> None:
    model = Classifier(create_backbone("builtin:tiny-test"), len(CLASSES))
    with pytest.raises(ConfigError, match="needs a backbone with a text tower"):
        FineTune().start_head(model, FineTuneOptions(head_init="zeroshot"), {}, CLASSES)
