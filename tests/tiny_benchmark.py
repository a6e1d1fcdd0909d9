"""The ``tiny`` benchmark and ``tiny-test`` backbone, registered on import.

``tiny`` is a 4-class problem of 8x8 images (noisy class prototypes); its OOD set draws the
same classes with a different noise level and a brightness shift. It is registered through the
public registries exactly as a user's own benchmark would be. conftest imports this module; tests
that start other processes (torchrun workers, cluster jobs) make it an ``lpft.plugins`` entry
point there (``tests_support.tiny_plugin_env``).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from lpft.data import Benchmark, BuildContext, EvalSplit, register_benchmark
from lpft.models import BUILTIN_BACKBONES
from lpft.models.glyph_resnet import GlyphResNet
from tests_support import ArrayImages, NeverRead, OodGuard

TINY_CLASSES = 4


class TinyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    per_class: int = 12
    seed: int = 0
    guard_ood: bool = False
    # ID test raises on any read (for commands that must never touch it).
    forbid_id_test: bool = False
    shuffle_ood_labels: bool = False
    ood_val: bool = False
    augment: str = "none"


def tiny_split(prototypes, per_class, rng, noise, shift):
    labels = np.repeat(np.arange(TINY_CLASSES), per_class)
    pixels = prototypes[labels] + rng.normal(0, noise, (len(labels), 8, 8)) + shift
    return np.clip(pixels * 255, 0, 255).astype(np.uint8), labels


@register_benchmark(
    "tiny",
    options_model=TinyOptions,
    defaults={
        "methods": {
            "ft": {"epochs": 2, "batch_size": 8, "lrs": [0.01]},
            "lpft": {"epochs": 2, "batch_size": 8, "lrs": [0.001]},
        }
    },
)
def build_tiny(context: BuildContext, options: TinyOptions) -> Benchmark:
    rng = np.random.default_rng(options.seed)
    prototypes = rng.uniform(0.1, 0.9, (TINY_CLASSES, 8, 8))
    train = tiny_split(prototypes, options.per_class, rng, 0.15, 0.0)
    val = tiny_split(prototypes, options.per_class, rng, 0.15, 0.0)
    test = tiny_split(prototypes, options.per_class, rng, 0.15, 0.0)
    ood_images, ood_labels = tiny_split(prototypes, options.per_class, rng, 0.3, 0.1)
    ood_val = tiny_split(prototypes, options.per_class, rng, 0.3, 0.1)
    if options.shuffle_ood_labels:
        ood_labels = rng.permutation(ood_labels)
    guard = OodGuard() if options.guard_ood else None
    return Benchmark(
        name="tiny",
        classes=[f"c{i}" for i in range(TINY_CLASSES)],
        id_train=ArrayImages(*train),
        id_val=ArrayImages(*val),
        id_test=ArrayImages(*test, NeverRead() if options.forbid_id_test else guard),
        ood={"shifted": EvalSplit(ArrayImages(ood_images, ood_labels, guard))},
        ood_val={"shifted": EvalSplit(ArrayImages(*ood_val, guard))} if options.ood_val else {},
        augment=options.augment,
    )


@BUILTIN_BACKBONES.register("tiny-test")
def tiny_backbone() -> GlyphResNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return GlyphResNet(widths=(8, 16, 16), blocks_per_stage=1)
