"""The fine-tuning loop for one (method, seed, learning rate) cell, resumable at any epoch.

Each epoch: train with the chosen optimiser and a per-step cosine schedule, evaluate on ID
validation, keep the best epoch's weights (``best.pt``), then save everything resume needs
(``last.pt``: model, optimiser, scheduler, RNG states, position, history) atomically. Shuffling
and augmentation are seeded from (seed, epoch, position), so a resumed cell retraces the exact
same batches and, on CPU, ends bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import pickle
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lpft.errors import CheckpointError, TrainingDivergedError
from lpft.models.backbone import Classifier, set_training_mode
from lpft.training.checkpoint_writer import BackgroundWriter, host_copy
from lpft.training.distributed import (
    all_reduce_sum,
    data_parallel,
    is_main_process,
    read_on_main,
    train_sampler,
)
from lpft.training.evaluate import accuracy
from lpft.training.features import autocast, forward_split
from lpft.training.loaders import train_loader
from lpft.training.resident import BatchedLoader, BatchedSplit, prefetched
from lpft.training.runtime import derive_seed, rng_state, set_rng_state
from lpft.validation import StrictModel

LAST = "last.pt"
BEST = "best.pt"


class TrainingOptions(StrictModel):
    """How one fine-tuning cell trains (the learning rate is the cell's own hyperparameter)."""

    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_epochs: float = Field(0.0, ge=0.0)
    # "eval" trains with the whole network in eval mode (BatchNorm statistics frozen, dropout
    # off), as the official LP-FT code does; "train" is ordinary training mode.
    batchnorm: Literal["train", "eval"] = "train"
    checkpoint_every_steps: int | None = Field(None, ge=1)
    # A non-finite loss: "stop" ends the cell there and keeps its best epoch so far (the cell
    # fails only if no epoch had finished); "fail" fails the whole cell.
    on_nonfinite: Literal["stop", "fail"] = "stop"
    # Refused: under torchrun BatchNorm in train mode always normalises over the global batch.
    sync_batchnorm: None = Field(None, exclude=True)

    @field_validator("sync_batchnorm", mode="before")
    @classmethod
    def _no_longer_an_option(cls, value: object) -> None:
        raise ValueError(
            "not an option any more: BatchNorm in train mode normalises over the global batch "
            "under torchrun (and a single process has nothing to synchronise); remove the key"
        )


@dataclass
class ParamGroup:
    """Parameters trained at ``lr_scale`` times the cell's learning rate. Parameters in no group
    are frozen: they get no gradient and never change."""

    params: list[nn.Parameter]
    lr_scale: float = 1.0


# An extra loss term of the model, added to the cross-entropy at every step (e.g. L2-SP).
LossTerm = Callable[[Classifier], torch.Tensor]


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_acc: float
    id_val: float
    lr: float


@dataclass
class FitOutcome:
    best_epoch: int
    best_val: float
    history: list[EpochRecord]
    seconds: float
    diverged_at_epoch: int | None = None
    # Training steps only (validation excluded): wall seconds per epoch and images per second.
    epoch_seconds: float | None = None
    images_per_second: float | None = None


@dataclass
class _Position:
    """Where training stands; saved in ``last.pt``."""

    epoch: int = 0
    step_in_epoch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    best_val: float = -math.inf
    best_epoch: int = 0
    seconds: float = 0.0
    history: list[EpochRecord] = field(default_factory=list)
    diverged_at_epoch: int | None = None
    # Over all epochs' training steps (validation excluded), for throughput.
    step_seconds: float = 0.0
    images: int = 0


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def build_optimizer(
    model: torch.nn.Module,
    options: TrainingOptions,
    lr: float,
    groups: list[ParamGroup] | None = None,
) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over ``groups`` (default: every parameter at ``lr``)."""
    groups = groups if groups is not None else [ParamGroup(list(model.parameters()))]
    param_groups = [{"params": g.params, "lr": lr * g.lr_scale} for g in groups if g.params]
    if options.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=options.weight_decay)
    return torch.optim.SGD(
        param_groups, lr=lr, momentum=options.momentum, weight_decay=options.weight_decay
    )


def freeze_outside(model: torch.nn.Module, groups: list[ParamGroup]) -> None:
    """Turn off gradients of every parameter of ``model`` that no group trains."""
    trained = {id(p) for g in groups for p in g.params}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trained)


def keep_frozen_norms_in_eval(model: torch.nn.Module) -> None:
    """Normalisation layers whose own parameters are all frozen keep their running statistics:
    a frozen block stays bit-identical even while the rest trains with BatchNorm in train mode."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            own = list(module.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                module.eval()


class FineTuner:
    """Trains ``model`` on ``train_data`` for one learning rate, selecting the best epoch."""

    def __init__(
        self,
        model: Classifier,
        options: TrainingOptions,
        lr: float,
        train_data: Dataset,
        val_loader: DataLoader | BatchedLoader,
        device: torch.device,
        cell_dir: Path,
        seed: int,
        num_workers: int = 0,
        autocast_dtype: torch.dtype | None = None,
        on_step: Callable[[int, int], None] | None = None,
        param_groups: list[ParamGroup] | None = None,
        loss_term: LossTerm | None = None,
    ) -> None:
        """``param_groups`` (default: the whole model at ``lr``) and ``loss_term`` come from the
        method: per-group learning rates, frozen parameters, regularisers."""
        self.model = model.to(device)
        self.loss_term = loss_term
        if param_groups is not None:
            freeze_outside(self.model, param_groups)
        # Under torchrun, steps go through the DistributedDataParallel wrapper; ``model`` is
        # what is saved and evaluated.
        self.model, self.network = data_parallel(self.model, options.batchnorm == "train")
        self.options = options
        self.lr = lr
        self.train_data = train_data
        self.val_loader = val_loader
        self.device = device
        self.cell_dir = Path(cell_dir)
        self.seed = seed
        self.autocast_dtype = autocast_dtype
        self.on_step = on_step
        self.sampler, self.batch_per_process = train_sampler(
            len(train_data), seed, options.batch_size
        )
        self.drop_last = len(train_data) > self.batch_per_process
        self.loader = None
        if not isinstance(train_data, BatchedSplit):
            batch = self.batch_per_process
            self.loader = train_loader(train_data, self.sampler, batch, num_workers)
        whole, part = divmod(len(self.sampler), self.batch_per_process)
        self.steps_per_epoch = whole + (1 if part and not self.drop_last else 0)
        warmup = round(options.warmup_epochs * self.steps_per_epoch)
        self.optimizer = build_optimizer(self.model, options, lr, param_groups)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_with_warmup(self.total_steps, warmup)
        )
        self.position = _Position()
        self._clock = (time.perf_counter(), 0)
        self._writer = BackgroundWriter()
        # fp16 needs loss scaling; disabled (every call a pass-through) for fp32 and bf16.
        self.scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
        # Sums over the current steps of (loss * batch, correct, examples, non-finite losses),
        # kept in float64 on the device and read at epoch ends and checkpoints.
        self._device_stats = torch.zeros(4, dtype=torch.float64, device=device)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.options.epochs

    def fit(self) -> FitOutcome:
        """Train the remaining epochs. ``last.pt`` stays until the caller has recorded the
        outcome (a finished cell resumed from it just returns the same outcome)."""
        self._resume_if_possible()
        pos = self.position
        try:
            while pos.epoch < self.options.epochs and pos.diverged_at_epoch is None:
                self._train_epoch()
                if pos.diverged_at_epoch is not None:
                    self._save_last()
                    break
                self._finish_epoch()
        finally:
            self._writer.close()
        per_epoch = self.steps_per_epoch * self.options.batch_size
        epochs = pos.images / (per_epoch if self.drop_last else len(self.train_data))
        return FitOutcome(
            best_epoch=pos.best_epoch,
            best_val=pos.best_val,
            history=pos.history,
            seconds=pos.seconds,
            diverged_at_epoch=pos.diverged_at_epoch,
            epoch_seconds=pos.step_seconds / epochs if epochs else None,
            images_per_second=pos.images / pos.step_seconds if pos.step_seconds else None,
        )

    def _train_epoch(self) -> None:
        pos = self.position
        if pos.step_in_epoch == 0:
            torch.manual_seed(derive_seed(self.seed, "epoch", pos.epoch))
        self.sampler.set_position(pos.epoch, pos.step_in_epoch * self.options.batch_size)
        set_training_mode(self.model, self.options.batchnorm)
        keep_frozen_norms_in_eval(self.model)
        every = self.options.checkpoint_every_steps
        started = time.perf_counter()
        self._clock = (started, pos.step_in_epoch)
        for images, labels in self._batches():
            self._train_step(images, labels)
            pos.step_in_epoch += 1
            if self.on_step is not None:
                self.on_step(pos.epoch * self.steps_per_epoch + pos.step_in_epoch, self.total_steps)
            if (
                every
                and pos.step_in_epoch % every == 0
                and pos.step_in_epoch < self.steps_per_epoch
            ):
                self._collect_statistics()
                if pos.diverged_at_epoch is not None:
                    break
                self._add_step_time(time.perf_counter() - started)
                started = time.perf_counter()
                self._save_last()
        self._collect_statistics()
        self._add_step_time(time.perf_counter() - started)

    def images_per_second(self) -> float:
        """Training throughput in the current epoch so far, for progress displays (measured on
        the host: with an accelerator it runs ahead by the few steps queued there)."""
        started, first_step = self._clock
        elapsed = time.perf_counter() - started
        steps = self.position.step_in_epoch - first_step
        return steps * self.options.batch_size / elapsed if elapsed > 0 else 0.0

    def _add_step_time(self, seconds: float) -> None:
        """Training-step time (measured after the statistics read, so the device has caught up)."""
        self.position.seconds += seconds
        self.position.step_seconds += seconds

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's remaining batches on the device, the next one prepared while the
        current one trains."""
        if self.loader is not None:
            return prefetched(iter(self.loader), self.device)
        return self.train_data.batches(
            list(self.sampler), self.position.epoch, self.batch_per_process, self.drop_last
        )

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One step; statistics stay on the device so the GPU is never waited for here."""
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with autocast(self.device, self.autocast_dtype):
            logits = self.network(images)
            loss = F.cross_entropy(logits.float(), labels)
            if self.loss_term is not None:
                loss = loss + self.loss_term(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        detached = loss.detach()
        self._device_stats[0] += detached * len(labels)
        self._device_stats[1] += (logits.detach().argmax(dim=1) == labels).sum()
        self._device_stats[2] += len(labels)
        self._device_stats[3] += (~torch.isfinite(detached)).float()

    def _collect_statistics(self) -> None:
        """Move the step statistics to the position; on a non-finite loss, stop the cell
        (``on_nonfinite``: keep the best epoch so far, or fail it)."""
        loss_sum, correct, seen, nonfinite = all_reduce_sum(self._device_stats).tolist()
        self._device_stats.zero_()
        pos = self.position
        if nonfinite > 0:
            message = (
                f"non-finite loss in epoch {pos.epoch + 1} (by step {pos.step_in_epoch}) "
                f"with lr={self.lr:g}"
            )
            if self.options.on_nonfinite == "fail":
                raise TrainingDivergedError(message)
            if pos.best_epoch == 0:
                raise TrainingDivergedError(f"{message}, before any epoch finished")
            pos.diverged_at_epoch = pos.epoch + 1
            return
        pos.loss_sum += loss_sum
        pos.correct += round(correct)
        pos.seen += round(seen)
        pos.images += round(seen)

    def _finish_epoch(self) -> None:
        pos = self.position
        started = time.perf_counter()
        outputs = forward_split(
            self.model.backbone,
            self.val_loader,
            self.device,
            self.model.head,
            autocast_dtype=self.autocast_dtype,
        )
        val_acc = accuracy(outputs.logits, outputs.labels)
        record = EpochRecord(
            epoch=pos.epoch + 1,
            train_loss=pos.loss_sum / max(pos.seen, 1),
            train_acc=pos.correct / max(pos.seen, 1),
            id_val=val_acc,
            lr=self.lr,
        )
        pos.history.append(record)
        if val_acc > pos.best_val:
            pos.best_val, pos.best_epoch = val_acc, record.epoch
            self._save_best(record.epoch, val_acc)
        pos.epoch += 1
        pos.step_in_epoch = 0
        pos.loss_sum, pos.correct, pos.seen = 0.0, 0, 0
        pos.seconds += time.perf_counter() - started
        self._save_last()

    def _save_best(self, epoch: int, val_acc: float) -> None:
        if is_main_process():
            self._save(BEST, {"model": self.model.state_dict(), "epoch": epoch, "id_val": val_acc})

    def _save(self, name: str, state: dict) -> None:
        """Snapshot ``state`` to host memory now; write it while training goes on."""
        self._writer.save(self.cell_dir / name, host_copy(state))

    def _save_last(self) -> None:
        """Everything resume needs; written by rank 0 alone under torchrun."""
        if not is_main_process():
            return
        pos = self.position
        self._save(
            LAST,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng_state(),
                "position": {
                    "epoch": pos.epoch,
                    "step_in_epoch": pos.step_in_epoch,
                    "loss_sum": pos.loss_sum,
                    "correct": pos.correct,
                    "seen": pos.seen,
                    "best_val": pos.best_val,
                    "best_epoch": pos.best_epoch,
                    "seconds": pos.seconds,
                    "history": [vars(r) for r in pos.history],
                    "diverged_at_epoch": pos.diverged_at_epoch,
                    "step_seconds": pos.step_seconds,
                    "images": pos.images,
                },
            },
        )

    def _resume_if_possible(self) -> None:
        """Continue from ``last.pt`` if there is one; under torchrun rank 0 reads it and every
        rank gets rank 0's state."""
        state = read_on_main(self._read_last)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        saved = dict(state["position"])
        saved["history"] = [EpochRecord(**r) for r in saved["history"]]
        self.position = _Position(**saved)
        set_rng_state(state["rng"])

    def _read_last(self) -> dict | None:
        path = self.cell_dir / LAST
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            raise CheckpointError(
                f"resume checkpoint {path} is unreadable ({type(exc).__name__}); delete it to "
                "restart this cell from scratch"
            ) from None
