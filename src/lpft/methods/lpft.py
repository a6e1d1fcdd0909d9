"""``lpft``: fine-tuning that starts from the linear probe's head (Kumar et al., ICLR 2022)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat

from lpft.methods.finetune import FineTune, FineTuneOptions
from lpft.registry import METHODS

PAPER_LPFT_LRS = [3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4]


class LPFTOptions(FineTuneOptions):
    """FT started from the LP head: the paper's smaller LR grid and frozen BatchNorm statistics."""

    lrs: list[PositiveFloat] = Field(default_factory=lambda: list(PAPER_LPFT_LRS), min_length=1)
    # "zeroshot": start from the zero-shot head of a CLIP backbone instead of the LP head
    head_init: Literal["lp", "zeroshot"] = "lp"
    batchnorm: Literal["train", "eval"] = "eval"


@METHODS.register("lpft")
class LinearProbeThenFineTune(FineTune):
    name = "lpft"
    options_model = LPFTOptions
    requires = ("lp",)
