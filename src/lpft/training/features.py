"""One forward pass over a split: logits, penultimate features and pooled block outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from lpft.models.backbone import Backbone
from lpft.training.distributed import ShardSampler
from lpft.training.resident import BatchedLoader


@dataclass
class ForwardOutputs:
    labels: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor | None = None
    blocks: dict[str, torch.Tensor] = field(default_factory=dict)


def pool_block_output(output: torch.Tensor) -> torch.Tensor:
    """Average over spatial positions (N, C, H, W) or tokens (N, L, C) -> (N, C). Blocks that
    return a tuple (some Hugging Face layers) contribute their first element."""
    if isinstance(output, tuple | list):
        output = output[0]
    if output.dim() == 4:
        return output.mean(dim=(2, 3))
    if output.dim() == 3:
        return output.mean(dim=1)
    return output.flatten(1)


@contextmanager
def capture_blocks(backbone: Backbone, sink: dict[str, list[torch.Tensor]]):
    """Collect the pooled outputs of ``backbone.blocks()`` into ``sink`` through forward hooks.

    A compiled ``forward`` (``--compile``) runs eagerly meanwhile: code compiled before the
    hooks existed never calls them (TorchDynamo does not guard on hooks)."""
    handles = []
    for name, module in backbone.blocks().items():

        def hook(_module: nn.Module, _inputs, output, name: str = name) -> None:
            sink.setdefault(name, []).append(pool_block_output(output).float().cpu())

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.compiler.set_stance("force_eager"):
            yield
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def forward_split(
    backbone: Backbone,
    loader: DataLoader | BatchedLoader,
    device: torch.device,
    head: nn.Module | None = None,
    with_blocks: bool = False,
    autocast_dtype: torch.dtype | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ForwardOutputs:
    """Run ``backbone`` (and ``head``) in eval mode over ``loader``; results on the CPU.

    A loader over one shard per process (``ShardSampler``, under torchrun) gives every process
    the outputs of the whole split, gathered back into dataset order.
    """
    backbone.eval()
    if head is not None:
        head.eval()
    features, logits, labels = [], [], []
    blocks: dict[str, list[torch.Tensor]] = {}
    with capture_blocks(backbone, blocks) if with_blocks else nullcontext():
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            with autocast(device, autocast_dtype):
                batch_features = backbone(images)
                if head is not None:
                    logits.append(head(batch_features).float().cpu())
            features.append(batch_features.float().cpu())
            labels.append(torch.as_tensor(targets).cpu())
            if on_batch is not None:
                on_batch(len(targets))
    outputs = ForwardOutputs(
        labels=torch.cat(labels),
        features=torch.cat(features),
        logits=torch.cat(logits) if logits else None,
        blocks={name: torch.cat(parts) for name, parts in blocks.items()},
    )
    if isinstance(loader.sampler, ShardSampler):
        return _gathered(outputs, loader.sampler)
    return outputs


def _gathered(outputs: ForwardOutputs, shards: ShardSampler) -> ForwardOutputs:
    return ForwardOutputs(
        labels=shards.gather(outputs.labels),
        features=shards.gather(outputs.features),
        logits=shards.gather(outputs.logits) if outputs.logits is not None else None,
        blocks={name: shards.gather(part) for name, part in outputs.blocks.items()},
    )


@torch.inference_mode()
def feature_batches(
    backbone: Backbone,
    loader: DataLoader | BatchedLoader,
    device: torch.device,
    with_blocks: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]:
    """(features, labels, pooled blocks) per batch, on the CPU; for writing straight to disk."""
    backbone.eval()
    sink: dict[str, list[torch.Tensor]] = {}
    with capture_blocks(backbone, sink) if with_blocks else nullcontext():
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            with autocast(device, autocast_dtype):
                batch_features = backbone(images)
            blocks = {name: parts.pop() for name, parts in sink.items()}
            yield batch_features.float().cpu(), torch.as_tensor(targets).cpu(), blocks


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision when ``dtype`` is given (e.g. bf16 on GPUs), a no-op otherwise."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
