"""What the model sources share: a wrapper turning another library's network into a
``Backbone``, lazy imports of optional extras, quiet and offline-aware library calls, and the
offline-download error."""

from __future__ import annotations

import functools
import importlib
import logging
import re
import socket
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from lpft.errors import CheckpointError, ConfigError
from lpft.models.backbone import Backbone, InputSpec
from lpft.models.spec import ModelSpec

# How long a download host may take to accept a connection before lpft calls it unreachable.
PROBE_SECONDS = 3.0
# Containers whose children are a network's stages or layers, tried in this order.
STAGE_CONTAINERS = (
    "features",
    "stages",
    "blocks",
    "layers",
    "layer",
    "resblocks",
    "trunk_output",
)


def require_extra(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or fail with the install command of its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"this model source needs the optional package '{module}' ({exc.name} is missing): "
            f"pip install 'lpft[{extra}]'"
        ) from None


@functools.cache
def host_reachable(url: str) -> bool:
    """Whether the host of ``url`` accepts a connection within ``PROBE_SECONDS`` (asked once
    per process). Behind a proxy, which this cannot judge, the answer is yes."""
    parsed = urlparse(url)
    if urllib.request.getproxies() or not parsed.hostname:
        return True
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((parsed.hostname, port), timeout=PROBE_SECONDS).close()
    except OSError:
        return False
    return True


@contextmanager
def hub_offline_unless_reachable(downloads: bool = True) -> Iterator[None]:
    """The Hugging Face Hub client reads only its cache while the Hub cannot be reached, so a
    missing file fails at once instead of after a minute of retries (``HF_HUB_OFFLINE`` for the
    duration of the call). A call that ``downloads`` nothing is not worth a probe."""
    constants = importlib.import_module("huggingface_hub.constants")
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or (downloads and not host_reachable(constants.ENDPOINT))
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


@contextmanager
def quiet_library() -> Iterator[None]:
    """Hold back a model library's log records and warnings during one call: when it fails,
    lpft's one-line error is all that is printed; when it succeeds, its warnings are shown."""
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logging.disable(previous)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


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


def has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def parameters_under(net: nn.Module, names: list[str]) -> list[str]:
    """Names of ``net``'s parameters that are, or belong to a module, in ``names``."""
    prefixes = tuple(f"{name}." for name in names)
    return [
        parameter
        for parameter, _ in net.named_parameters()
        if parameter in names or parameter.startswith(prefixes)
    ]


def stem_group_parameters(net: nn.Module) -> list[str]:
    """Parameters of the stem group of timm's own parameter grouping (``group_matcher``, which
    timm's layer-wise learning-rate decay uses): ``patch_embed``, ``cls_token``, ``pos_embed``
    of a ViT, ``conv1`` + ``bn1`` of a ResNet, ``stem`` of a ConvNeXt. Empty for a model that
    declares no grouping."""
    try:
        stem = net.group_matcher(coarse=True).get("stem")
    except (AttributeError, NotImplementedError):
        return []
    patterns = [stem] if isinstance(stem, str) else [entry[0] for entry in stem or []]
    return [
        name
        for name, _ in net.named_parameters()
        if any(re.match(pattern, name) for pattern in patterns)
    ]


class LibraryBackbone(Backbone):
    """``net`` maps a batch of images to (N, feature_dim) features.

    ``embedding`` names the modules or parameters of ``net`` that make up its stem or patch
    embedding (with a ViT's class token and position embedding), as the source library
    structures the model. ``weights_module`` is what a checkpoint of this backbone holds (``net``
    unless a source keeps more, e.g. a CLIP text tower); ``adapt_state_dict`` maps a foreign
    state dict (a checkpoint made outside lpft) onto it, e.g. dropping the classifier.
    """

    def __init__(
        self,
        net: nn.Module,
        feature_dim: int,
        input_spec: InputSpec,
        block_names: list[str],
        features: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
        dropped_prefixes: tuple[str, ...] = (),
        embedding: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.feature_dim = feature_dim
        self.input_spec = input_spec
        # A block without parameters (an activation a library taps) has nothing to fine-tune.
        self.block_names = [n for n in block_names if has_parameters(net.get_submodule(n))]
        self.embedding = list(embedding or [])
        self._features = features
        self.dropped_prefixes = dropped_prefixes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._features is None:
            return self.net(x)
        return self._features(self.net, x)

    def blocks(self) -> dict[str, nn.Module]:
        return {name: self.net.get_submodule(name) for name in self.block_names}

    @property
    def architecture(self) -> str:
        return type(self.net).__name__

    def embedding_parameters(self) -> list[str]:
        names = parameters_under(self.net, self.embedding)
        if not names:
            raise ConfigError(
                f"backbone {self.architecture} has no stem / embedding parameters that "
                "lpft recognises (freezing the embedding needs them)"
            )
        return [f"net.{name}" for name in names]

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
