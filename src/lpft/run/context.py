"""The run's side of ``lpft.methods.base.MethodContext``: data, the pretrained backbone, its
features, device and progress, for the methods the runner drives."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset

from lpft.config import RunConfig
from lpft.data import Benchmark, build_transform
from lpft.data.transforms import DETERMINISTIC_POLICIES
from lpft.models.backbone import Backbone
from lpft.training.features import ForwardOutputs, forward_split
from lpft.training.loaders import TensorImageDataset, TransformedDataset, eval_loader

# Pre-transform a split into memory when its pipeline is deterministic and it fits in this.
MATERIALIZE_MAX_BYTES = 1 << 30


class FeatureStore:
    """Pretrained-backbone outputs per split, computed once per run and kept in memory.

    ``loader_for`` builds a split's loader only when first asked, so test and OOD data are only
    touched when the evaluation phase needs them.
    """

    def __init__(
        self,
        backbone: Backbone,
        loader_for: Callable[[str], DataLoader],
        device: torch.device,
        progress: Progress,
        autocast_dtype: torch.dtype | None,
    ) -> None:
        self.backbone = backbone
        self.loader_for = loader_for
        self.device = device
        self.progress = progress
        self.autocast_dtype = autocast_dtype
        self._cache: dict[str, ForwardOutputs] = {}

    def get(self, split: str, with_blocks: bool = False) -> ForwardOutputs:
        cached = self._cache.get(split)
        if cached is not None and (cached.blocks or not with_blocks):
            return cached
        loader = self.loader_for(split)
        task = self.progress.add_task(f"features: {split}", total=len(loader.dataset))
        outputs = forward_split(
            self.backbone.to(self.device),
            loader,
            self.device,
            with_blocks=with_blocks,
            autocast_dtype=self.autocast_dtype,
            on_batch=lambda n: self.progress.advance(task, n),
        )
        self.progress.remove_task(task)
        self._cache[split] = outputs
        return outputs


@dataclass
class RunContext:
    config: RunConfig
    benchmark: Benchmark
    pretrained: Backbone
    device: torch.device
    progress: Progress
    autocast_dtype: torch.dtype | None
    current_label: str = ""
    features: FeatureStore = field(init=False)

    @property
    def num_workers(self) -> int:
        return self.config.num_workers

    def __post_init__(self) -> None:
        self._materialized: dict[str, TensorImageDataset] = {}
        self.pretrained.eval()
        spec = self.pretrained.input_spec
        self.train_transform = build_transform(self.benchmark.augment, spec, train=True)
        self.eval_transform = build_transform(self.benchmark.augment, spec, train=False)
        self.features = FeatureStore(
            self.pretrained, self.eval_loader, self.device, self.progress, self.autocast_dtype
        )

    def split_dataset(self, split: str) -> Dataset:
        if split == "id_train":
            return self.benchmark.id_train
        if split == "id_val":
            return self.benchmark.id_val
        return self.benchmark.eval_splits()[split].dataset

    def eval_loader(self, split: str) -> DataLoader:
        return eval_loader(
            self.prepared(split), self.config.eval_batch_size, self.config.num_workers
        )

    def prepared(self, split: str) -> Dataset:
        """``split`` through the eval transform, pre-transformed in memory when small."""
        if split in self._materialized:
            return self._materialized[split]
        dataset = TransformedDataset(self.split_dataset(split), self.eval_transform)
        spec = self.pretrained.input_spec
        size = len(dataset) * spec.channels * spec.size * spec.size * 4
        if size > MATERIALIZE_MAX_BYTES:
            return dataset
        self._materialized[split] = TensorImageDataset.from_dataset(dataset)
        return self._materialized[split]

    def train_dataset(self, seed: int) -> Dataset:
        if self.benchmark.augment in DETERMINISTIC_POLICIES:
            return self.prepared("id_train")
        return TransformedDataset(self.benchmark.id_train, self.train_transform, seed=seed)

    def fresh_backbone(self) -> Backbone:
        """An independent copy of the pretrained backbone for one fine-tuning cell."""
        return copy.deepcopy(self.pretrained)
