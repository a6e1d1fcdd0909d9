"""``digits-shift``: the embedded offline benchmark (printed -> handwritten digits).

ID: digits rendered from three font families (DejaVu Sans, DejaVu Sans Mono, STIX) with random
style jitter, in the 8x8 UCI format. OOD sets:

- ``handwritten``: scikit-learn's real handwritten digits, from a fixed held-out part that no
  pretraining recipe ever sees;
- ``fonts-heldout``: digits from font families never used for ID (DejaVu Serif, Computer Modern).

Each OOD set also has a validation twin, used only for choosing pretraining recipes
(``ood_split: val``) and for the ``--oracle`` rows (the benchmark's ``ood_val``), so that the
test sets stay untouched for the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from lpft.data.benchmark import Benchmark, BuildContext, EvalSplit, register_benchmark
from lpft.data.cache import cached_arrays
from lpft.data.glyphs import DIGITS, STYLES, faces_of, render_set

ID_FAMILIES = ("dejavu-sans", "dejavu-sans-mono", "stix")
HELDOUT_FAMILIES = ("dejavu-serif", "computer-modern")
MAX_PIXEL = 16

# The handwritten digits are split once, with this seed, whatever the benchmark's own seed:
# the shipped backbones were pretrained on the "pretrain" part and must never see the rest.
HANDWRITTEN_SPLIT_SEED = 0
HANDWRITTEN_FRACTIONS = {"pretrain": 0.5, "ood_val": 0.15, "ood_test": 0.35}

# Render-seed streams, one per generated split, so no two splits share a glyph.
STREAMS = {"id_train": 1, "id_val": 2, "id_test": 3, "fonts_test": 4, "fonts_val": 5}


class GlyphDataset(Dataset):
    """8x8 arrays with values 0..16, served as grayscale PIL images (0..255)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        pixels = (self.images[index].astype(np.float32) * (255.0 / MAX_PIXEL)).round()
        return Image.fromarray(pixels.astype(np.uint8), mode="L"), int(self.labels[index])


@dataclass(frozen=True)
class ArraySplit:
    images: np.ndarray
    labels: np.ndarray
    source_indices: np.ndarray | None = None


def handwritten_splits() -> dict[str, ArraySplit]:
    """Stratified split of the 1,797 UCI digits into pretrain / ood_val / ood_test parts."""
    digits = load_digits()
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(HANDWRITTEN_SPLIT_SEED)
    parts: dict[str, list[int]] = {name: [] for name in HANDWRITTEN_FRACTIONS}
    for label in range(len(DIGITS)):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_pretrain = round(len(members) * HANDWRITTEN_FRACTIONS["pretrain"])
        n_val = round(len(members) * HANDWRITTEN_FRACTIONS["ood_val"])
        parts["pretrain"] += members[:n_pretrain].tolist()
        parts["ood_val"] += members[n_pretrain : n_pretrain + n_val].tolist()
        parts["ood_test"] += members[n_pretrain + n_val :].tolist()
    chosen = {name: np.array(sorted(idx)) for name, idx in parts.items()}
    return {name: ArraySplit(images[idx], labels[idx], idx) for name, idx in chosen.items()}


class DigitsShiftOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train_per_class: int = Field(20, ge=1, le=5000)
    val_per_class: int = Field(50, ge=1, le=5000)
    test_per_class: int = Field(100, ge=1, le=5000)
    heldout_per_class: int = Field(60, ge=1, le=5000)
    style: Literal["standard", "medium", "hard"] = "hard"
    seed: int = Field(0, ge=0)
    ood_split: Literal["test", "val"] = "test"


def generate_printed_digits(options: DigitsShiftOptions) -> dict[str, np.ndarray]:
    id_faces = faces_of(ID_FAMILIES)
    heldout_faces = faces_of(HELDOUT_FAMILIES)
    plan = {
        "id_train": (id_faces, options.train_per_class),
        "id_val": (id_faces, options.val_per_class),
        "id_test": (id_faces, options.test_per_class),
        "fonts_test": (heldout_faces, options.heldout_per_class),
        "fonts_val": (heldout_faces, options.heldout_per_class),
    }
    arrays = {}
    for split, (faces, per_class) in plan.items():
        images, labels = render_set(
            DIGITS, faces, per_class, (options.seed, STREAMS[split]), STYLES[options.style]
        )
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    return arrays


def printed_digits(options: DigitsShiftOptions, cache_dir) -> dict[str, ArraySplit]:
    spec = options.model_dump(exclude={"ood_split"}) | {"version": 1}
    arrays = cached_arrays(
        cache_dir, "digits-shift", spec, lambda: generate_printed_digits(options)
    )
    return {
        split: ArraySplit(arrays[f"{split}_images"], arrays[f"{split}_labels"]) for split in STREAMS
    }


def _dataset(split: ArraySplit) -> GlyphDataset:
    return GlyphDataset(split.images, split.labels)


@register_benchmark(
    "digits-shift",
    options_model=DigitsShiftOptions,
    defaults={
        "methods": {
            "lp": {},
            "ft": {"lrs": [3e-3, 1e-2, 3e-2], "epochs": 10, "batch_size": 32},
            "ft@bn-eval": {"batchnorm": "eval", "lrs": [1e-3, 3e-3, 1e-2, 3e-2]},
            "lpft": {"lrs": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3], "epochs": 10, "batch_size": 32},
        }
    },
)
def build_digits_shift(context: BuildContext, options: DigitsShiftOptions) -> Benchmark:
    printed = printed_digits(options, context.cache_dir)
    handwritten = handwritten_splits()
    ood_hand = handwritten["ood_test" if options.ood_split == "test" else "ood_val"]
    ood_fonts = printed["fonts_test" if options.ood_split == "test" else "fonts_val"]
    ood_val = (
        {
            "handwritten": EvalSplit(_dataset(handwritten["ood_val"])),
            "fonts-heldout": EvalSplit(_dataset(printed["fonts_val"])),
        }
        if options.ood_split == "test"
        else {}
    )
    return Benchmark(
        name="digits-shift",
        classes=list(DIGITS),
        id_train=_dataset(printed["id_train"]),
        id_val=_dataset(printed["id_val"]),
        id_test=_dataset(printed["id_test"]),
        ood={
            "handwritten": EvalSplit(_dataset(ood_hand)),
            "fonts-heldout": EvalSplit(_dataset(ood_fonts)),
        },
        augment="none",
        ood_val=ood_val,
    )
