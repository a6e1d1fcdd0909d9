"""Pretraining recipes for the shipped glyph backbones.

The paper's precondition for LP-FT's OOD advantage is that pretraining covered the OOD domain
(MoCo saw ImageNet, CLIP saw web images like DomainNet's). Both recipes see printed letters (never
digits) from every font and in every rendering style of the benchmark, so the ID domain's look is
covered as ImageNet covers BREEDS' source classes; they differ exactly in the OOD domain:

- ``glyph-resnet``: letters from every font plus a labelled pool of handwritten digits that is
  disjoint from the benchmark's handwritten OOD validation and test splits. Its features cover
  handwriting, so the precondition holds.
- ``glyph-resnet-letters``: letters from every font only. Its features never saw handwriting:
  the weak-feature contrast, where fine-tuning is expected to help OOD as well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from lpft.registry import Registry


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    handwritten_pool: bool
    letters_per_class: int = 200
    letter_styles: tuple[str, ...] = ("standard", "hard")
    handwritten_repeats: int = 3
    epochs: int = 8
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0
    widths: tuple[int, ...] = (32, 64, 128)
    blocks_per_stage: int = 2

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["widths"] = list(self.widths)
        data["letter_styles"] = list(self.letter_styles)
        return data

    def with_changes(self, **changes: Any) -> Recipe:
        return replace(self, **changes)


RECIPES: Registry[Recipe] = Registry("pretraining recipe")

RECIPES.register("glyph-resnet")(
    Recipe(
        name="glyph-resnet",
        description="letters (52 classes) from all font families in every rendering style + "
        "the handwritten-digit pretraining pool (10 classes), one 62-way supervised head",
        handwritten_pool=True,
    )
)
RECIPES.register("glyph-resnet-letters")(
    Recipe(
        name="glyph-resnet-letters",
        description="letters (52 classes) from all font families in every rendering style "
        "only; never sees handwriting",
        handwritten_pool=False,
    )
)
