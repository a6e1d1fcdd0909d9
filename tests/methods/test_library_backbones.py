"""freeze-embed and surgical on a backbone of every model source, random weights: a short
fine-tune leaves the embedding (freeze-embed) or every block but the chosen one (surgical)
bit-identical, statistics included, while what trains moves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lpft.methods.finetune import FineTune
from lpft.methods.freeze_embed import FreezeEmbed, FreezeEmbedOptions
from lpft.methods.surgical import Surgical, SurgicalOptions
from lpft.models import Backbone, Classifier, create_backbone
from lpft.training.loaders import TensorImageDataset, eval_loader
from lpft.training.trainer import FineTuner
from model_checks import images_for, register_tiny_clip, save_tiny_hf_vit

CPU = torch.device("cpu")

# Per source: the spec (``{tmp}`` is a test directory) and what its embedding must contain.
SOURCES = {
    "torchvision": ("torchvision:resnet18?weights=random", {"net.conv1.", "net.bn1."}),
    "timm": (
        "timm:test_vit?weights=random",
        {"net.patch_embed.", "net.cls_token", "net.pos_embed"},
    ),
    "openclip": (
        "openclip:lpft-tiny-clip?weights=random",
        {"net.conv1.", "net.class_embedding", "net.positional_embedding", "net.ln_pre."},
    ),
    "hf": ("hf:{tmp}/tiny-vit?weights=random", {"net.embeddings."}),
}


@pytest.fixture(scope="module", params=list(SOURCES))
def source_backbone(request, tmp_path_factory) -> tuple[Backbone, set[str]]:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "openclip":
        register_tiny_clip(tmp)
    if request.param == "hf":
        save_tiny_hf_vit(tmp / "tiny-vit")
    spec, expected = SOURCES[request.param]
    return create_backbone(spec.format(tmp=tmp)), expected


def fine_tune(
    backbone: Backbone, method: FineTune, options, hparams: dict, cell_dir: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Two SGD steps of ``method``'s parameter groups on random images; (before, after)."""
    torch.manual_seed(0)
    model = Classifier(backbone, 3)
    size = 32 if any(isinstance(m, torch.nn.Conv2d) for m in backbone.modules()) else None
    images = images_for(backbone, size=size, count=8)
    data = TensorImageDataset(images, torch.arange(8) % 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    FineTuner(
        model,
        options,
        0.5,
        data,
        eval_loader(data, 8, 0),
        CPU,
        cell_dir,
        0,
        param_groups=method.param_groups(model, options, hparams),
    ).fit()
    return before, model.state_dict()


def embedding_state(backbone: Backbone) -> list[str]:
    """State-dict keys of the embedding: its parameters, and the buffers (BatchNorm statistics)
    of the modules whose own parameters are all embedding parameters."""
    embedding = set(backbone.embedding_parameters())
    keys = [f"backbone.{name}" for name in embedding]
    for name, module in backbone.named_modules():
        own = [f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)]
        if own and set(own) <= embedding:
            keys += [f"backbone.{name}.{b}" for b, _ in module.named_buffers(recurse=False)]
    return keys


def test_freeze_embed_keeps_the_embedding_bit_identical(source_backbone, tmp_path: Path) -> None:
    backbone, expected = source_backbone
    embedding = backbone.embedding_parameters()
    assert all(any(name.startswith(e) for name in embedding) for e in expected), embedding
    options = FreezeEmbedOptions(epochs=1, batch_size=4, lrs=[0.5])
    FreezeEmbed().check(options, backbone)
    before, after = fine_tune(backbone, FreezeEmbed(), options, {"lr": 0.5}, tmp_path)
    frozen = embedding_state(backbone)
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    moved = [k for k in before if k not in frozen and not torch.equal(before[k], after[k])]
    assert any(k.startswith("backbone.") for k in moved)


def test_surgical_trains_only_its_block(source_backbone, tmp_path: Path) -> None:
    backbone, _ = source_backbone
    block = list(backbone.blocks())[-1]
    options = SurgicalOptions(epochs=1, batch_size=4, lrs=[0.5], block=block)
    Surgical().check(options, backbone)
    before, after = fine_tune(backbone, Surgical(), options, {"lr": 0.5, "block": block}, tmp_path)
    inside = (f"backbone.net.{block}.", "head.")
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(inside))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(inside[0]))
