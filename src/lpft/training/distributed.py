"""Data-parallel training over processes started by ``torchrun`` (torch.distributed).

A cell's batches do not depend on the number of processes: every rank draws the same global
permutation from (seed, epoch), cuts it into global batches of the configured size, and takes
its own contiguous slice of each. Gradients are averaged by DistributedDataParallel, so with
equal slices a step equals the single-process step on the whole batch; BatchNorm, dropout and
stochastic depth see the global batch too (``data_parallel``). Evaluation passes are sharded
(rank r takes examples r, r + W, ...) and gathered back into dataset order on every rank, so
every rank selects exactly what a single process would. Only rank 0 writes files, and only
rank 0 reads the state a cell resumes from (``read_on_main``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from lpft.errors import ConfigError
from lpft.training.global_batch import (
    convert_to_global_batchnorm,
    route_masks,
    unrouted_randomness,
)
from lpft.training.loaders import EpochSampler

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def is_main_process() -> bool:
    """True outside distributed runs, and on rank 0 inside one: the process that writes."""
    return current_world().main


def launched_by_torchrun() -> bool:
    """torchrun (torch.distributed.run) describes each process in these variables."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextmanager
def distributed_session(device: str) -> Iterator[World]:
    """Join the process group torchrun describes in the environment (a no-op without it).

    NCCL on GPUs (each process on its ``LOCAL_RANK`` GPU), gloo on CPUs. With one process the
    group exists but nothing is wrapped or sharded: there is nothing to synchronise.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield current_world()
        return
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    try:
        yield current_world()
        # Every rank reaches the end before any tears the group down: a rank that destroys
        # it while another is still connected can abort the other at exit.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if current_world().distributed:
        dist.barrier()


def read_on_main(read: Callable[[], T]) -> T:
    """``read()`` run by rank 0 alone, its value (or the error it raised) given to every rank.

    Used for the state a run resumes from: ranks never read their own copy of a file, so nodes
    without a shared directory, or with an older copy, still resume from rank 0's state.
    """
    world = current_world()
    if not world.distributed:
        return read()
    outcome: list[object] = [None]
    if world.main:
        try:
            outcome[0] = (True, read())
        except Exception as exc:  # re-raised on every rank below, so none waits forever
            outcome[0] = (False, exc)
    dist.broadcast_object_list(outcome, src=0)
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (unchanged in a single process)."""
    if current_world().distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class GlobalBatchSampler(EpochSampler):
    """``EpochSampler``'s order, cut into global batches; yields this rank's slice of each.

    Only whole global batches are used (the single-process loader drops the last partial one
    too), so every rank takes ``batch_size / world`` examples per step.
    """

    def __init__(self, size: int, seed: int, batch_size: int, world: World) -> None:
        super().__init__(size, seed)
        if batch_size % world.size:
            raise ConfigError(
                f"batch_size {batch_size} is not divisible by the {world.size} processes; "
                "the global batch is split evenly over ranks"
            )
        if size <= batch_size:
            raise ConfigError(
                f"training set of {size} examples is not larger than batch_size {batch_size}; "
                "too small to split over processes"
            )
        self.batch_size = batch_size
        self.world = world
        self.local_batch = batch_size // world.size

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())
        start = self.world.rank * self.local_batch
        mine: list[int] = []
        for batch in range(len(order) // self.batch_size):
            offset = batch * self.batch_size + start
            mine.extend(order[offset : offset + self.local_batch])
        return iter(mine)

    def __len__(self) -> int:
        return (super().__len__() // self.batch_size) * self.local_batch


def train_sampler(size: int, seed: int, batch_size: int) -> tuple[EpochSampler, int]:
    """The sampler for this process and the per-process batch size it is drawn with."""
    world = current_world()
    if not world.distributed:
        return EpochSampler(size, seed), batch_size
    sampler = GlobalBatchSampler(size, seed, batch_size, world)
    return sampler, sampler.local_batch


class ShardSampler(Sampler[int]):
    """Examples ``rank, rank + W, ...`` of a dataset, for a sharded, gathered evaluation pass."""

    def __init__(self, size: int, world: World) -> None:
        self.size = size
        self.world = world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.world.rank, self.size, self.world.size))

    def __len__(self) -> int:
        return len(range(self.world.rank, self.size, self.world.size))

    def gather(self, part: torch.Tensor) -> torch.Tensor:
        """Every rank's part of a per-example tensor, put back in dataset order (CPU)."""
        parts: list[torch.Tensor | None] = [None] * self.world.size
        dist.all_gather_object(parts, part.cpu())
        whole = torch.empty((self.size, *part.shape[1:]), dtype=part.dtype)
        for rank, piece in enumerate(parts):
            whole[rank :: self.world.size] = piece
        return whole


def shard_sampler(size: int) -> ShardSampler | None:
    world = current_world()
    return ShardSampler(size, world) if world.distributed else None


def data_parallel(model: nn.Module, train_mode: bool) -> tuple[nn.Module, nn.Module]:
    """(module to keep and save, module to train through): DDP-wrapped under torchrun.

    Every layer that looks across examples or draws random masks is made to see the global
    batch (``lpft.training.global_batch``): BatchNorm normalises over it (``SyncBatchNorm`` on
    GPUs, ``GlobalBatchNorm`` otherwise) and dropout / stochastic depth draw the single-process
    masks. The converted layers reuse the originals' parameters, so optimiser groups built on
    ``model`` beforehand stay valid. ``train_mode``: the model trains in train mode (in eval
    mode nothing is random and BatchNorm uses its running statistics).
    """
    if not current_world().distributed:
        return model, model
    device = next(model.parameters()).device
    if train_mode:
        refuse_unrouted_randomness(model)
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        model = convert_to_global_batchnorm(model)
    route_masks(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return model, nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def refuse_unrouted_randomness(model: nn.Module) -> None:
    """Masks that cannot be drawn for the global batch would repeat on every process."""
    found = unrouted_randomness(model)
    if found:
        raise ConfigError(
            f"layers {', '.join(found[:3])}{' ...' if len(found) > 3 else ''} draw random masks "
            "that cannot be split over processes: train this model in one process per cell, or "
            "with batchnorm: eval (no dropout)"
        )
