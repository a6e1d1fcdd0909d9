"""``freeze-embed``: fine-tuning with the stem / patch embedding frozen (Kumar et al., *How to
fine-tune vision models with SGD*, ICLR 2024).

Everything but the backbone's embedding parameters (``Backbone.embedding_parameters()``) trains;
the embedding, BatchNorm statistics included, stays exactly as pretrained. ``head_init: lp``
starts the head from the selected LP solution, as LP-FT does (FT + freeze-embed otherwise).
"""

from __future__ import annotations

from typing import Literal

from lpft.errors import ConfigError
from lpft.methods.finetune import FineTune, FineTuneOptions
from lpft.models.backbone import Backbone, Classifier
from lpft.registry import METHODS
from lpft.training.trainer import ParamGroup


class FreezeEmbedOptions(FineTuneOptions):
    """FT (or, with ``head_init: lp``, LP-FT) with the stem / patch embedding frozen."""

    head_init: Literal["default", "zero", "lp", "zeroshot"] = "default"


def embedding_names(backbone: Backbone) -> list[str]:
    """The backbone's embedding parameters, checked against its ``named_parameters()``."""
    names = backbone.embedding_parameters()
    all_names = dict(backbone.named_parameters())
    unknown = [n for n in names if n not in all_names]
    if not names or unknown:
        raise ConfigError(
            f"backbone {backbone.architecture}: embedding_parameters() names "
            f"{unknown or 'no parameters'}; expected names from named_parameters()"
        )
    return names


def split_embedding(model: Classifier) -> tuple[list[str], list[str]]:
    """Names (in ``model``) of the embedding parameters and of all the others."""
    frozen = {f"backbone.{n}" for n in embedding_names(model.backbone)}
    trained = [n for n, _ in model.named_parameters() if n not in frozen]
    return sorted(frozen), trained


@METHODS.register("freeze-embed")
class FreezeEmbed(FineTune):
    name = "freeze-embed"
    options_model = FreezeEmbedOptions
    defaults_from = "ft"

    def check(self, options: FreezeEmbedOptions, backbone: Backbone) -> None:
        super().check(options, backbone)
        embedding_names(backbone)

    def param_groups(
        self, model: Classifier, options: FreezeEmbedOptions, hparams: dict[str, float | str]
    ) -> list[ParamGroup]:
        _, trained = split_embedding(model)
        parameters = dict(model.named_parameters())
        return [ParamGroup([parameters[n] for n in trained])]

    def describe(self, options: FreezeEmbedOptions) -> dict[str, str]:
        return {**super().describe(options), "frozen": "embedding", "head": options.head_init}
