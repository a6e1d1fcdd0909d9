"""``timm:<name>[.<tag>][?weights=random]``: timm models (extra ``lpft[timm]``).

Names and pretrained tags are spelled as timm spells them (``vit_base_patch16_224.augreg_in21k``);
the input pipeline is timm's data config of the model (size, interpolation, crop_pct, mean/std).
"""

from __future__ import annotations

import torch

from lpft.errors import ConfigError
from lpft.models.adapters import (
    LibraryBackbone,
    first_line,
    hub_offline_unless_reachable,
    quiet_library,
    require_extra,
    stage_names,
    stem_group_parameters,
    weights_unavailable,
)
from lpft.models.backbone import InputSpec, register_backbone_source
from lpft.registry import PRETRAINED_WEIGHTS, RANDOM_WEIGHTS, ModelSpec

EXTRA = "timm"


def _timm():
    return require_extra("timm", EXTRA)


def check_spec(spec: ModelSpec) -> None:
    if spec.weights not in (PRETRAINED_WEIGHTS, RANDOM_WEIGHTS):
        raise ConfigError(
            f"model spec '{spec}': weights must be random or pretrained "
            "(timm names its pretrained tags in the model name, e.g. resnet50.a1_in1k)"
        )


def weights_location(timm, name: str) -> tuple[str, str]:
    """(what is fetched, where to put it offline) for a timm model's pretrained weights."""
    hub = require_extra("huggingface_hub.constants", EXTRA)
    config = timm.models.get_pretrained_cfg(name)
    if config is not None and config.hf_hub_id:
        return (
            f"hub repo {config.hf_hub_id}",
            f"{hub.HF_HUB_CACHE} (the Hugging Face cache)",
        )
    url = config.url if config is not None else name
    return url, f"{_torch_hub_checkpoints()}/{url.rsplit('/', 1)[-1]}"


def _torch_hub_checkpoints() -> str:
    return f"{torch.hub.get_dir()}/checkpoints"


def input_spec_of(timm, net) -> InputSpec:
    config = timm.data.resolve_data_config({}, model=net)
    channels, size, _ = config["input_size"]
    return InputSpec(
        size=size,
        channels=channels,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config["interpolation"],
        crop_pct=config["crop_pct"],
    )


def block_names(net) -> list[str]:
    """timm's own feature taps where the model declares them, else its stages."""
    info = getattr(net, "feature_info", None)
    names = [entry["module"] for entry in info or [] if isinstance(entry, dict)]
    modules = dict(net.named_modules())
    names = [name for name in names if name in modules]
    return names or stage_names(net)


def catalogue(pattern: str | None) -> list[str]:
    timm = _timm()
    return [f"timm:{name}" for name in timm.list_models(f"*{pattern or ''}*", pretrained=True)]


@register_backbone_source(
    "timm",
    catalogue=catalogue,
    summary="timm models with pretrained tags, e.g. timm:vit_base_patch16_224.augreg_in21k",
    check=check_spec,
)
def build_timm(spec: ModelSpec) -> LibraryBackbone:
    timm = _timm()
    if not timm.is_model(spec.name):
        raise ConfigError(
            f"model spec '{spec}': timm has no model '{spec.name}' (list them: lpft models timm)"
        )
    try:
        with quiet_library(), hub_offline_unless_reachable(not spec.random_weights):
            net = timm.create_model(spec.name, pretrained=not spec.random_weights, num_classes=0)
    except (OSError, RuntimeError) as exc:
        if spec.random_weights:
            raise ConfigError(f"model spec '{spec}': {first_line(exc)}") from None
        what, place = weights_location(timm, spec.name)
        raise weights_unavailable(spec, what, place, exc) from None
    feature_dim = getattr(net, "head_hidden_size", None) or net.num_features
    return LibraryBackbone(
        net,
        feature_dim,
        input_spec_of(timm, net),
        block_names(net),
        embedding=stem_group_parameters(net),
    )
