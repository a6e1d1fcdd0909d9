"""``lpft pretrain``: build a glyph backbone from offline sources, with its card."""

from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from lpft import __version__
from lpft.config import deep_merge, resolve_config
from lpft.data.digits_shift import GlyphDataset, handwritten_splits
from lpft.data.glyphs import FONT_FAMILIES, LETTERS, STYLES, faces_of, render_set
from lpft.data.transforms import build_transform
from lpft.io import atomic_write_json
from lpft.models import save_backbone_checkpoint
from lpft.models.glyph_resnet import GlyphResNet
from lpft.pretrain.recipes import Recipe
from lpft.run.runner import Runner
from lpft.training.loaders import EpochSampler, TensorImageDataset, TransformedDataset
from lpft.training.runtime import configure_determinism, derive_seed, seed_everything

LETTER_STREAM = 10
MAX_SHIFT = 1


@dataclass
class PretrainData:
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    counts: dict[str, int]


def pretraining_arrays(recipe: Recipe) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, int]]:
    """Letters from every font family, plus the handwritten pool when the recipe uses it."""
    faces = faces_of(tuple(FONT_FAMILIES))
    rendered = [
        render_set(
            LETTERS,
            faces,
            recipe.letters_per_class,
            (recipe.seed, LETTER_STREAM, index),
            STYLES[style],
        )
        for index, style in enumerate(recipe.letter_styles)
    ]
    images = np.concatenate([r[0] for r in rendered])
    labels = np.concatenate([r[1] for r in rendered])
    names = [f"letter {c}" for c in LETTERS]
    counts = {"letters": len(labels), "handwritten_pool": 0}
    if recipe.handwritten_pool:
        pool = handwritten_splits()["pretrain"]
        repeated_images = np.concatenate([pool.images] * recipe.handwritten_repeats)
        repeated_labels = np.concatenate([pool.labels] * recipe.handwritten_repeats)
        images = np.concatenate([images, repeated_images])
        labels = np.concatenate([labels, repeated_labels + len(LETTERS)])
        names += [f"handwritten {d}" for d in range(10)]
        counts["handwritten_pool"] = len(pool.labels)
    return images, labels, names, counts


def prepare_data(recipe: Recipe, backbone: GlyphResNet) -> PretrainData:
    images, labels, names, counts = pretraining_arrays(recipe)
    transform = build_transform("none", backbone.input_spec, train=False)
    tensors = TensorImageDataset.from_dataset(
        TransformedDataset(GlyphDataset(images, labels), transform)
    )
    return PretrainData(tensors.images, tensors.labels, names, counts)


def random_shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to one pixel in x and y (zero fill)."""
    n, _, h, w = images.shape
    pad_value = float(images.min())
    padded = F.pad(images, (MAX_SHIFT,) * 4, value=pad_value)
    dy = torch.randint(0, 2 * MAX_SHIFT + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * MAX_SHIFT + 1, (n,), generator=generator)
    rows = torch.arange(h)[None, :] + dy[:, None]
    cols = torch.arange(w)[None, :] + dx[:, None]
    batch = torch.arange(n)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def train_backbone(
    recipe: Recipe, progress: Progress | None = None
) -> tuple[GlyphResNet, dict[str, Any]]:
    configure_determinism(True)
    seed_everything(recipe.seed)
    backbone = GlyphResNet(recipe.widths, recipe.blocks_per_stage)
    data = prepare_data(recipe, backbone)
    head = torch.nn.Linear(backbone.feature_dim, len(data.class_names))
    model = torch.nn.Sequential(backbone, head)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=0.9,
        weight_decay=recipe.weight_decay,
        nesterov=True,
    )
    sampler = EpochSampler(len(data.labels), recipe.seed)
    steps_per_epoch = len(data.labels) // recipe.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.15
    )
    task = (
        progress.add_task(f"pretrain {recipe.name}", total=recipe.epochs * steps_per_epoch)
        if progress
        else None
    )
    started = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    for epoch in range(recipe.epochs):
        sampler.set_position(epoch)
        order = torch.tensor(list(iter(sampler)))
        generator = torch.Generator().manual_seed(derive_seed(recipe.seed, "shift", epoch))
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(steps_per_epoch):
            index = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            images = random_shift(data.images[index], generator)
            labels = data.labels[index]
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
            if progress is not None:
                progress.advance(task)
    stats = {
        "seconds": time.perf_counter() - started,
        "final_epoch_loss": loss_sum / max(seen, 1),
        "final_epoch_accuracy": correct / max(seen, 1),
        "classes": len(data.class_names),
        "examples": data.counts,
    }
    return backbone, stats


def linear_probe_figures(
    checkpoint: Path, benchmark_options: dict[str, Any] | None = None, quiet: bool = True
) -> dict[str, float]:
    """LP accuracy of a checkpoint on every digits-shift split (OOD test and validation twins),
    exactly as ``lpft run --methods lp`` measures it."""
    figures: dict[str, float] = {}
    for ood_split in ("test", "val"):
        with tempfile.TemporaryDirectory() as tmp:
            overrides = deep_merge(
                {"benchmark_options": benchmark_options or {}},
                {
                    "model": f"file:{checkpoint}",
                    "methods": ["lp"],
                    "seeds": 1,
                    "benchmark_options": {"ood_split": ood_split},
                    "out": tmp,
                    "report": False,
                    "device": "cpu",
                },
            )
            config = resolve_config(overrides=overrides)
            results = Runner(config, quiet=quiet).run()
        selected = results["methods"]["lp"]["seeds"][0]["selected"]
        suffix = "" if ood_split == "test" else "_val"
        if ood_split == "test":
            figures |= {"C": selected["hparams"]["C"], "id_val": selected["id_val"]}
            figures["id_test"] = selected["id_test"]
        figures |= {f"{name}{suffix}": acc for name, acc in selected["ood"].items()}
    return figures


def pretrain(
    recipe: Recipe,
    out_dir: Path,
    progress: Progress | None = None,
    quiet: bool = True,
    benchmark_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train, save ``<name>.pt`` and write ``<name>.json`` (the card) into ``out_dir``.

    The card's LP figures use the default digits-shift benchmark unless ``benchmark_options``
    changes it.
    """
    backbone, stats = train_backbone(recipe, progress)
    out_dir = Path(out_dir)
    checkpoint = out_dir / f"{recipe.name}.pt"
    arch_kwargs = {
        "widths": list(recipe.widths),
        "blocks_per_stage": recipe.blocks_per_stage,
        "input_size": backbone.input_spec.size,
    }
    sha = save_backbone_checkpoint(checkpoint, "glyph-resnet", arch_kwargs, backbone)
    card = {
        "name": recipe.name,
        "file": checkpoint.name,
        "sha256": sha,
        "architecture": {"arch": "glyph-resnet", **arch_kwargs},
        "parameters": sum(p.numel() for p in backbone.parameters()),
        "feature_dim": backbone.feature_dim,
        "recipe": recipe.to_json(),
        "data": {
            **stats.pop("examples"),
            "letter_fonts": faces_of(tuple(FONT_FAMILIES)),
            "handwritten_source": "sklearn.datasets.load_digits, 'pretrain' part of the fixed "
            "split (lpft.data.digits_shift.handwritten_splits)"
            if recipe.handwritten_pool
            else None,
        },
        "training": stats,
        "linear_probe": linear_probe_figures(checkpoint, benchmark_options, quiet=quiet),
        "made_with": {
            "lpft": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
    }
    atomic_write_json(out_dir / f"{recipe.name}.json", card)
    return card
