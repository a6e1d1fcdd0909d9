"""``torchvision:<arch>[?weights=ENUM|random]``: torchvision's classification models.

Without ``weights`` the architecture's default weights enum is used (``resnet50`` ->
``IMAGENET1K_V2``). Resize, crop and normalisation come from that enum's eval transforms, also
for random weights (the enum's metadata needs no download).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from lpft.errors import ConfigError
from lpft.models.adapters import (
    LibraryBackbone,
    host_reachable,
    stage_names,
    weights_unavailable,
)
from lpft.models.backbone import InputSpec, register_backbone_source
from lpft.registry import PRETRAINED_WEIGHTS, RANDOM_WEIGHTS, ModelSpec, unknown_name_message

# Attributes holding the classifier, by family (ResNet: fc, ViT: heads, ConvNeXt: classifier).
HEAD_ATTRIBUTES = ("fc", "heads", "head", "classifier")
# Stems of the families whose stem is not the first layer of ``features``, by model class.
STEMS = {
    "VisionTransformer": ("conv_proj", "class_token", "encoder.pos_embedding"),
    "ResNet": ("conv1", "bn1"),
    "DenseNet": ("features.conv0", "features.norm0"),
    "RegNet": ("stem",),
    "MaxVit": ("stem",),
    "GoogLeNet": ("conv1",),
    "Inception3": ("Conv2d_1a_3x3",),
    "ShuffleNetV2": ("conv1",),
    "MNASNet": ("layers.0", "layers.1"),
}


def architectures() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _weights_enum(arch: str):
    return torchvision.models.get_model_weights(arch)


def check_spec(spec: ModelSpec) -> None:
    names = architectures()
    if spec.name not in names:
        raise ConfigError(unknown_name_message("torchvision architecture", spec.name, names))
    enum = _weights_enum(spec.name)
    valid = [w.name for w in enum]
    if spec.weights not in (PRETRAINED_WEIGHTS, RANDOM_WEIGHTS, *valid):
        raise ConfigError(
            f"model spec '{spec}': weights must be random or one of {', '.join(valid)}"
        )


def chosen_weights(spec: ModelSpec):
    """The weights enum member whose transforms (and, unless random, values) are used."""
    enum = _weights_enum(spec.name)
    return (
        enum.DEFAULT if spec.weights in (PRETRAINED_WEIGHTS, RANDOM_WEIGHTS) else enum[spec.weights]
    )


def input_spec_of(weights) -> InputSpec:
    transform = weights.transforms()
    crop = transform.crop_size[0]
    return InputSpec(
        size=crop,
        channels=3,
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        interpolation=transform.interpolation.value,
        crop_pct=crop / transform.resize_size[0],
    )


def remove_classifier(net: nn.Module) -> tuple[int, str]:
    """Replace the last linear layer of the classifier by the identity; returns its input
    width and its state-dict prefix (dropped from foreign checkpoints, e.g. MoCo's ``fc``)."""
    for attribute in HEAD_ATTRIBUTES:
        head = getattr(net, attribute, None)
        if head is None:
            continue
        if isinstance(head, nn.Linear):
            setattr(net, attribute, nn.Identity())
            return head.in_features, f"{attribute}."
        linears = [(n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            name, linear = linears[-1]
            parent_name, _, child = name.rpartition(".")
            parent = head.get_submodule(parent_name) if parent_name else head
            setattr(parent, child, nn.Identity())
            return linear.in_features, f"{attribute}.{name}."
    raise ConfigError(f"torchvision model {type(net).__name__}: no classifier layer found")


def embedding_modules(net: nn.Module) -> list[str]:
    """The stem or patch embedding of a torchvision model, by its class (torchvision names no
    stem of its own): a ViT's patch projection, class token and position embedding, a ResNet's
    first convolution and BatchNorm, ... and the first layer of ``features`` for the families
    built on it (ConvNeXt and Swin patchify stems, EfficientNet, MobileNet, VGG, AlexNet)."""
    for family, names in STEMS.items():
        if isinstance(net, getattr(torchvision.models, family)):
            return list(names)
    features = getattr(net, "features", None)
    if isinstance(features, nn.Sequential):
        return [f"features.{next(iter(features.named_children()))[0]}"]
    return []


def download_state_dict(spec: ModelSpec, weights) -> dict[str, torch.Tensor]:
    """The weights from torch hub's cache, else downloaded; an unreachable host fails at once."""
    place = Path(torch.hub.get_dir(), "checkpoints", weights.url.rsplit("/", 1)[-1])
    try:
        if not place.is_file() and not host_reachable(weights.url):
            raise OSError(f"{urlparse(weights.url).hostname} cannot be reached")
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # URLError, OSError, hash mismatch: all mean "not available"
        raise weights_unavailable(spec, weights.url, str(place), exc) from None


def catalogue(pattern: str | None) -> list[str]:
    lines = []
    for arch in architectures():
        if pattern and pattern not in arch:
            continue
        enum = _weights_enum(arch)
        names = [w.name + (" (default)" if w is enum.DEFAULT else "") for w in enum]
        lines.append(f"torchvision:{arch}  weights: {', '.join(names)}")
    return lines


@register_backbone_source(
    "torchvision",
    catalogue=catalogue,
    summary="torchvision classification models, e.g. torchvision:resnet50",
    check=check_spec,
)
def build_torchvision(spec: ModelSpec) -> LibraryBackbone:
    weights = chosen_weights(spec)
    net = torchvision.models.get_model(spec.name, weights=None)
    if not spec.random_weights:
        net.load_state_dict(download_state_dict(spec, weights))
    feature_dim, head_prefix = remove_classifier(net)
    return LibraryBackbone(
        net,
        feature_dim,
        input_spec_of(weights),
        stage_names(net),
        dropped_prefixes=(head_prefix,),
        embedding=embedding_modules(net),
    )
