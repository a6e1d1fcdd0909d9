"""``surgical``: fine-tuning one block of the backbone, every other block frozen (Lee et al.,
*Surgical fine-tuning improves adaptation to distribution shifts*, ICLR 2023).

The blocks are those of ``Backbone.blocks()`` (input to output). The chosen block and the head
train; every other block, BatchNorm statistics included, stays exactly as pretrained. By default
each block is tried at each learning rate and the (lr, block) pair is selected on ID val; the
option ``block`` fixes it. ``head_init: lp`` starts the head from the selected LP solution.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from lpft.errors import ConfigError
from lpft.methods.base import Candidate, MethodContext, Selected
from lpft.methods.finetune import FineTune, FineTuneOptions
from lpft.models.backbone import Backbone, Classifier
from lpft.registry import METHODS
from lpft.training.trainer import LAST, ParamGroup


class SurgicalOptions(FineTuneOptions):
    """FT of a single backbone block (and the head), the block chosen on ID val or fixed."""

    head_init: Literal["default", "zero", "lp", "zeroshot"] = "default"
    block: str | None = None


def block_names(backbone: Backbone, options: SurgicalOptions) -> list[str]:
    """The blocks to try: all of ``backbone.blocks()``, or the one fixed by ``block``."""
    names = list(backbone.blocks())
    if options.block is None:
        return names
    if options.block not in names:
        raise ConfigError(
            f"surgical: block '{options.block}' is not a block of {type(backbone).__name__} "
            f"(blocks: {', '.join(names)})"
        )
    return [options.block]


@METHODS.register("surgical")
class Surgical(FineTune):
    name = "surgical"
    options_model = SurgicalOptions
    defaults_from = "ft"

    def sweep_axes(self, options: SurgicalOptions) -> tuple[str, ...]:
        return ("lr", "block")

    def fit(
        self,
        ctx: MethodContext,
        options: SurgicalOptions,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
        required: Mapping[str, Selected],
    ) -> list[Candidate]:
        """One candidate per block, each trained in its own subdirectory of the cell."""
        return [
            self.train_candidate(
                ctx, options, {**hparams, "block": name}, seed, cell_dir, required, subdir=name
            )
            for name in block_names(ctx.fresh_backbone(), options)
        ]

    def param_groups(
        self, model: Classifier, options: SurgicalOptions, hparams: dict[str, float | str]
    ) -> list[ParamGroup]:
        block = model.backbone.blocks()[str(hparams["block"])]
        return [ParamGroup([*block.parameters(), *model.head.parameters()])]

    def fit_recorded(self, cell_dir: Path) -> None:
        for resume_state in Path(cell_dir).glob(f"*/{LAST}"):
            resume_state.unlink(missing_ok=True)

    def describe(self, options: SurgicalOptions) -> dict[str, str]:
        return {**super().describe(options), "block": options.block or "selected on ID val"}
