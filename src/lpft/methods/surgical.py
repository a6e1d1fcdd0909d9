"""``surgical``: fine-tuning one block of the backbone, every other block frozen (Lee et al.,
*Surgical fine-tuning improves adaptation to distribution shifts*, ICLR 2023).

The blocks are those of ``Backbone.blocks()`` (input to output). The chosen block and the head
train together, at the same learning rate; every other block, BatchNorm statistics included,
stays exactly as pretrained. The head starts as FT's (PyTorch's default initialisation), or from
the selected LP solution with ``head_init: lp``. By default each block is tried at each learning
rate and the (lr, block) pair is selected on ID val; the option ``block`` fixes it. A block whose
training diverges fails its own candidate only (recorded as ``failed_blocks`` with the others);
the learning-rate cell fails when every block does.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from lpft.errors import ConfigError, TrainingDivergedError
from lpft.methods.base import Candidate, MethodContext, Selected
from lpft.methods.finetune import FineTune, FineTuneOptions
from lpft.models.backbone import Backbone, Classifier
from lpft.registry import METHODS
from lpft.training.distributed import is_main_process
from lpft.training.trainer import LAST, ParamGroup


class SurgicalOptions(FineTuneOptions):
    """FT of a single backbone block (and the head), the block chosen on ID val or fixed."""

    block: str | None = None


def block_names(backbone: Backbone, options: SurgicalOptions) -> list[str]:
    """The blocks to try: all of ``backbone.blocks()``, or the one fixed by ``block``."""
    names = list(backbone.blocks())
    if not names:
        raise ConfigError(f"surgical: backbone {backbone.architecture} names no blocks")
    if options.block is None:
        return names
    if options.block not in names:
        raise ConfigError(
            f"surgical: block '{options.block}' is not a block of {backbone.architecture} "
            f"(blocks: {', '.join(names)})"
        )
    return [options.block]


@METHODS.register("surgical")
class Surgical(FineTune):
    name = "surgical"
    options_model = SurgicalOptions
    defaults_from = "ft"

    def check(self, options: SurgicalOptions, backbone: Backbone) -> None:
        super().check(options, backbone)
        block_names(backbone, options)

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
        """One candidate per block, each trained in its own subdirectory of the cell; a block
        that diverges is left out and named in the others' ``failed_blocks``."""
        candidates, failed = [], {}
        for name in block_names(ctx.fresh_backbone(), options):
            block_hparams = {**hparams, "block": name}
            try:
                candidates.append(
                    self.train_candidate(
                        ctx, options, block_hparams, seed, cell_dir, required, subdir=name
                    )
                )
            except TrainingDivergedError as exc:
                failed[name] = str(exc)
                ctx.progress.console.print(
                    f"[yellow]{ctx.current_label} block {name} failed: {exc}[/]"
                )
                if is_main_process():
                    shutil.rmtree(Path(cell_dir) / name, ignore_errors=True)
        if not candidates:
            raise TrainingDivergedError(
                "every block failed: " + "; ".join(f"{b}: {e}" for b, e in failed.items())
            )
        for candidate in candidates:
            candidate.info["failed_blocks"] = failed
        return candidates

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
