"""Layers that see the whole global batch when each process holds only its slice of it.

Under data parallelism a step is meant to equal the single-process step on the global batch.
Two kinds of layer break that when left alone: BatchNorm in train mode, which would normalise
(and update its running statistics) over the process's slice, and layers that multiply their
input by a random mask (dropout, stochastic depth), which would draw the same mask on every
process, since every process's generator starts each epoch from the same seed.

- ``GlobalBatchNorm`` all-reduces per-channel sums, sums of squares and counts (float64), and
  back-propagates through that all-reduce, so outputs, gradients and running statistics are
  those of BatchNorm over the global batch, identical on every process. It works with any
  backend (gloo on CPUs); on GPUs PyTorch's ``SyncBatchNorm`` does the same with NCCL.
- ``route_masks`` makes each dropout / stochastic-depth layer draw its mask for the whole
  global batch, exactly as the single process draws it from the same generator, and apply this
  process's rows: masks differ across processes and equal the single-process draw. Dimension 0
  of the layer's input must be the batch. The price is one transient mask of the global
  batch's size per layer and step (only a row per example for stochastic depth).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torchvision.ops import StochasticDepth

# Layers whose forward is ``input * mask`` with a random mask: the mask a ones tensor gets is
# the mask itself. ``per_row``: one draw per example (stochastic depth's "row" mode), so the
# probe needs one element per row; otherwise the mask has the input's shape.
ELEMENTWISE_MASKS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
ROW_MASK_CLASS_NAMES = frozenset({"DropPath"})  # timm's stochastic depth, found by name


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce sum whose backward all-reduces the gradient: every process's loss depends on
    every process's share of the sum, so each share gets the sum of all their gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over processes, differentiable (a plain sum in one process)."""
    return _SumOverProcesses.apply(tensor) if _distributed() else tensor


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch.

    In eval mode, and in a single process, it is ordinary BatchNorm; there are no collectives
    then, so sharded evaluation passes of different lengths never wait on each other.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected (batch, channels, ...) input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and _distributed()):
            return super().forward(input)
        mean, var, count = self._global_moments(input)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count)
        shape = (1, -1) + (1,) * (input.dim() - 2)
        scale = torch.rsqrt(var + self.eps).to(input.dtype)
        out = (input - mean.to(input.dtype).view(shape)) * scale.view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    def _global_moments(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Per-channel mean and (biased) variance over every process's batch, and its size."""
        dims = [0, *range(2, input.dim())]
        values = input.double()
        local_count = values.new_tensor([input.numel() // input.shape[1]])
        sums = sum_over_processes(
            torch.cat([values.sum(dims), (values * values).sum(dims), local_count])
        )
        channels = input.shape[1]
        count = sums[-1]
        mean = sums[:channels] / count
        var = (sums[channels : 2 * channels] / count - mean * mean).clamp_min(0.0)
        return mean, var, int(count.item())

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * count / max(count - 1, 1)
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def convert_to_global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced by a ``GlobalBatchNorm`` sharing its parameters,
    buffers and mode (optimiser groups built on the parameters stay valid)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, (GlobalBatchNorm, nn.SyncBatchNorm)
    ):
        return _global_copy(module)
    for name, child in module.named_children():
        replaced = convert_to_global_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


def _global_copy(norm: nn.modules.batchnorm._BatchNorm) -> GlobalBatchNorm:
    copy = GlobalBatchNorm(
        norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats
    )
    if norm.affine:
        copy.weight, copy.bias = norm.weight, norm.bias
    if norm.track_running_stats:
        copy.running_mean = norm.running_mean
        copy.running_var = norm.running_var
        copy.num_batches_tracked = norm.num_batches_tracked
    return copy.train(norm.training)


class _GlobalBatchMask:
    """A mask layer's forward, drawing its mask for the whole global batch (see module doc)."""

    def __init__(
        self, layer: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], per_row: bool
    ) -> None:
        self.layer = layer
        self.forward = forward
        self.per_row = per_row

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.layer.training and _distributed()):
            return self.forward(input)
        rows, rank = input.shape[0], dist.get_rank()
        global_rows = rows * dist.get_world_size()
        rest = (1,) * (input.dim() - 1) if self.per_row else tuple(input.shape[1:])
        mask = self.forward(input.new_ones((global_rows, *rest)))
        # A copy of this process's rows: backward keeps it, not the global batch's mask.
        return input * mask[rank * rows : (rank + 1) * rows].clone()


def mask_kind(layer: nn.Module) -> str | None:
    """The mask kind of a layer ``route_masks`` handles ("elementwise" or "row"), else None."""
    if isinstance(layer, ELEMENTWISE_MASKS):
        return "elementwise"
    if isinstance(layer, StochasticDepth) or type(layer).__name__ in ROW_MASK_CLASS_NAMES:
        return "row"
    return None


def route_masks(model: nn.Module) -> None:
    """Make every dropout / stochastic-depth layer of ``model`` draw for the global batch."""
    for layer in model.modules():
        kind = mask_kind(layer)
        if kind is not None and not isinstance(layer.forward, _GlobalBatchMask):
            layer.forward = _GlobalBatchMask(layer, layer.forward, per_row=kind == "row")


def unrouted_randomness(model: nn.Module) -> list[str]:
    """Layers that draw random masks ``route_masks`` cannot draw for the global batch (their
    masks would repeat on every process): alpha dropout, attention dropout inside
    ``nn.MultiheadAttention``, and attention dropout handed to a fused attention kernel (timm's
    ``fused_attn`` layers read their ``attn_drop``'s ``p`` without calling it)."""
    found = []
    for name, layer in model.named_modules():
        alpha = isinstance(layer, (nn.AlphaDropout, nn.FeatureAlphaDropout)) and layer.p > 0
        attention = isinstance(layer, nn.MultiheadAttention) and layer.dropout > 0
        if alpha or attention or _fused_attention_dropout(layer):
            found.append(name or type(layer).__name__)
    return found


def _fused_attention_dropout(layer: nn.Module) -> bool:
    dropout = getattr(layer, "attn_drop", None)
    fused = bool(getattr(layer, "fused_attn", False))
    return fused and isinstance(dropout, nn.Dropout) and dropout.p > 0
