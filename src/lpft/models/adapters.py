"""What the model sources share: a wrapper turning another library's network into a
``Backbone``, lazy imports of optional extras, and the offline-download error."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
from torch import nn

from lpft.errors import CheckpointError, ConfigError
from lpft.models.backbone import Backbone, InputSpec
from lpft.models.spec import ModelSpec

# Containers whose children are a network's stages or layers, tried in this order.
STAGE_CONTAINERS = ("features", "stages", "blocks", "layers", "layer", "resblocks")


def require_extra(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or fail with the install command of its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"this model source needs the optional package '{module}' ({exc.name} is missing): "
            f"pip install 'lpft[{extra}]'"
        ) from None


def weights_unavailable(
    spec: ModelSpec, what: str, place: str, exc: BaseException
) -> CheckpointError:
    """The one-line error when pretrained weights cannot be fetched (offline nodes)."""
    random = spec.with_options(weights="random")
    return CheckpointError(
        f"pretrained weights of {spec} could not be loaded ({what}: {first_line(exc)}); on a "
        f"machine without network place them at {place}, or use {random} for random weights"
    )


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def stage_names(net: nn.Module) -> list[str]:
    """Dotted names of a network's stages: ResNet ``layer1..4``, else the children of the
    first stage container found (``features``, ``stages``, ``encoder.layers``, ...)."""
    resnet_stages = [f"layer{i}" for i in range(1, 5)]
    if all(hasattr(net, name) for name in resnet_stages):
        return resnet_stages
    for module_name, module in net.named_modules():
        last = module_name.rsplit(".", 1)[-1]
        if last in STAGE_CONTAINERS and isinstance(module, nn.Sequential | nn.ModuleList):
            children = [name for name, _ in module.named_children()]
            if len(children) > 1:
                return [f"{module_name}.{child}" for child in children]
    return [name for name, _ in net.named_children()]


class LibraryBackbone(Backbone):
    """``net`` maps a batch of images to (N, feature_dim) features.

    ``weights_module`` is what a checkpoint of this backbone holds (``net`` unless a source
    keeps more, e.g. a CLIP text tower); ``adapt_state_dict`` maps a foreign state dict (a
    checkpoint made outside lpft) onto it, e.g. dropping the classifier.
    """

    def __init__(
        self,
        net: nn.Module,
        feature_dim: int,
        input_spec: InputSpec,
        block_names: list[str],
        features: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
        dropped_prefixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.net = net
        self.feature_dim = feature_dim
        self.input_spec = input_spec
        self.block_names = list(block_names)
        self._features = features
        self.dropped_prefixes = dropped_prefixes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._features is None:
            return self.net(x)
        return self._features(self.net, x)

    def blocks(self) -> dict[str, nn.Module]:
        return {name: self.net.get_submodule(name) for name in self.block_names}

    def weights_module(self) -> nn.Module:
        return self.net

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            key: value
            for key, value in state_dict.items()
            if not key.startswith(self.dropped_prefixes)
        }


class SharedReference:
    """Holds an object that every copy of a backbone shares: ``copy.deepcopy`` (one per
    fine-tuning cell) does not duplicate it, and it is not part of ``state_dict()``."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedReference:
        return self
