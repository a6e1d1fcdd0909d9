"""The run's side of ``lpft.methods.base.MethodContext``: data, the pretrained backbone, its
features, device and progress, for the methods the runner drives."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import Progress
from torch.utils.data import Dataset

from lpft.config import RunConfig
from lpft.data import Benchmark, dataset_fingerprint
from lpft.data.cache import lpft_home
from lpft.data.transforms import (
    DETERMINISTIC_POLICIES,
    NormalisePixels,
    crop_flip,
    pixel_transform,
    short_side,
)
from lpft.models.backbone import Backbone
from lpft.training.distributed import current_world, shard_sampler
from lpft.training.feature_cache import (
    CachedFeatures,
    FeatureCache,
    FeatureKey,
    state_dict_sha256,
)
from lpft.training.features import ForwardOutputs, feature_batches, forward_split
from lpft.training.resident import (
    BatchedLoader,
    BatchedSplit,
    DeviceBudget,
    ResidentImages,
    StoredImages,
    StreamedImages,
    placed,
    store_images,
)
from lpft.training.runtime import derive_seed

OOD_VAL_PREFIX = "ood_val:"
# Splits a fine-tuning cell reads every epoch (training with a deterministic policy, validation).
EVERY_EPOCH_SPLITS = frozenset({"id_train", "id_val"})


class FeatureStore:
    """Pretrained-backbone outputs per split, computed once and kept in memory.

    With a ``FeatureCache``, a split's outputs are read from disk when an earlier run (or an
    earlier phase) extracted them under the same key, and written there otherwise; then no
    image of that split is loaded. ``loader_for`` builds a split's loader only when needed, so
    test and OOD data are only touched when the evaluation phase asks for them.
    ``augmented_loader_for`` gives a split through the training transform with a seed, or None
    when that transform is deterministic (the augmented features are then the eval features);
    augmented passes are cached on disk too, under ``augmented_key_for(split, seed)`` (the
    training transform, the seed and the pass). ``on_disk`` hands out a split's disk entry
    without reading it into memory (for LP streamed from the file). Splits in ``blocks_for``
    are always extracted with their pooled block outputs.
    """

    def __init__(
        self,
        backbone: Backbone,
        loader_for: Callable[[str], BatchedLoader],
        device: torch.device,
        progress: Progress,
        autocast_dtype: torch.dtype | None,
        disk: FeatureCache | None = None,
        key_for: Callable[[str, bool], FeatureKey] | None = None,
        augmented_loader_for: Callable[[str, int], BatchedLoader | None] | None = None,
        augmented_key_for: Callable[[str, int], FeatureKey] | None = None,
        blocks_for: frozenset[str] = frozenset(),
    ) -> None:
        self.backbone = backbone
        self.loader_for = loader_for
        self.augmented_loader_for = augmented_loader_for or (lambda _split, _seed: None)
        self.device = device
        self.progress = progress
        self.autocast_dtype = autocast_dtype
        self.disk = disk
        self.key_for = key_for
        self.augmented_key_for = augmented_key_for
        self.blocks_for = blocks_for
        self._cache: dict[str, ForwardOutputs] = {}
        self._augmented: dict[tuple[str, int], ForwardOutputs] = {}

    def on_disk(self, split: str) -> CachedFeatures | None:
        """The split's disk-cache entry, extracted into it first if absent (row by row, never
        the whole split in memory); None when features are kept in memory only."""
        if self.disk is None or self.key_for is None:
            return None
        return self._disk_entry(split, with_blocks=False)

    def get(self, split: str, with_blocks: bool = False) -> ForwardOutputs:
        cached = self._cache.get(split)
        if cached is not None and (cached.blocks or not with_blocks):
            return cached
        if self.disk is not None and self.key_for is not None:
            outputs = _as_outputs(self._disk_entry(split, with_blocks))
        else:
            outputs = self._extract(split, with_blocks)
        self._cache[split] = outputs
        return outputs

    def augmented(self, split: str, seed: int) -> ForwardOutputs:
        if (split, seed) not in self._augmented:
            loader = self.augmented_loader_for(split, seed)
            if loader is None:
                return self.get(split)
            label = f"{split} (seed {seed})"
            if self.disk is not None and self.augmented_key_for is not None:
                key = self.augmented_key_for(split, seed)
                outputs = _as_outputs(self._entry([key], lambda: loader, label, False))
            else:
                outputs = self._forward(loader, label, False)
            self._augmented[split, seed] = outputs
        return self._augmented[split, seed]

    def _extract(self, split: str, with_blocks: bool) -> ForwardOutputs:
        return self._forward(self.loader_for(split), split, with_blocks or split in self.blocks_for)

    def _forward(self, loader: BatchedLoader, label: str, with_blocks: bool) -> ForwardOutputs:
        task = self.progress.add_task(f"features: {label}", total=len(loader.dataset))
        outputs = forward_split(
            self.backbone.to(self.device),
            loader,
            self.device,
            with_blocks=with_blocks,
            autocast_dtype=self.autocast_dtype,
            on_batch=lambda n: self.progress.advance(task, n),
        )
        self.progress.remove_task(task)
        return outputs

    def _disk_entry(self, split: str, with_blocks: bool) -> CachedFeatures:
        """The split's entry in the disk cache (one with blocks serves a request without).

        A split in ``blocks_for`` is extracted with its block outputs even when asked without,
        so a later request with blocks reads the same entry instead of a second pass."""
        keys = [self.key_for(split, True)] if with_blocks else []
        keys = keys or [self.key_for(split, False), self.key_for(split, True)]
        extract_blocks = with_blocks or split in self.blocks_for
        return self._entry(
            keys,
            lambda: self.loader_for(split),
            split,
            extract_blocks,
            self.key_for(split, extract_blocks),
        )

    def _entry(
        self,
        keys: list[FeatureKey],
        make_loader: Callable[[], BatchedLoader],
        label: str,
        with_blocks: bool,
        extract_key: FeatureKey | None = None,
    ) -> CachedFeatures:
        """The entry under the first of ``keys`` that exists, else the loader's outputs written
        under ``extract_key`` (default ``keys[0]``); on a hit no loader is built and no image
        is loaded."""
        for key in keys:
            entry = self.disk.lookup(key)
            if entry is not None:
                return entry
        loader = make_loader()
        task = self.progress.add_task(f"features: {label}", total=len(loader.dataset))

        def batches():
            for batch in feature_batches(
                self.backbone.to(self.device),
                loader,
                self.device,
                with_blocks=with_blocks,
                autocast_dtype=self.autocast_dtype,
            ):
                self.progress.advance(task, len(batch[1]))
                yield batch

        entry = self.disk.get_or_extract(extract_key or keys[0], len(loader.dataset), batches)
        self.progress.remove_task(task)
        return entry


def _as_outputs(entry: CachedFeatures) -> ForwardOutputs:
    """A cache entry read into memory as the tensors the methods expect."""
    return ForwardOutputs(
        labels=torch.from_numpy(np.array(entry.labels)),
        features=torch.from_numpy(np.array(entry.features, dtype=np.float32)),
        blocks={
            name: torch.from_numpy(np.array(values, dtype=np.float32))
            for name, values in entry.blocks.items()
        },
    )


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
        self._prepared: dict[str, BatchedSplit] = {}
        self._stored_for_training: dict[str, StoredImages | None] = {}
        self._streamed_for_training: dict[str, StreamedImages] = {}
        self._device_budget = DeviceBudget(self.device)
        self._weights_sha256: str | None = None
        self._data_fingerprints: dict[str, str | None] = {}
        self.pretrained.eval()
        if self._use_channels_last():
            self.pretrained.to(memory_format=torch.channels_last)
        # Under torchrun each process extracts its shard and the shards are gathered in memory;
        # the disk cache is filled and read by single-process runs.
        use_disk = self.config.feature_cache and not current_world().distributed
        disk = FeatureCache(lpft_home() / "features") if use_disk else None
        self.features = FeatureStore(
            self.pretrained,
            self.eval_loader,
            self.device,
            self.progress,
            self.autocast_dtype,
            disk,
            self.feature_key,
            augmented_loader_for=self.augmented_loader,
            augmented_key_for=self.augmented_feature_key,
            # Network methods measure feature distortion on the evaluation splits, which needs
            # the pretrained block outputs there: extract them in the same pass as the features.
            blocks_for=frozenset(self.benchmark.eval_splits()),
        )

    def feature_key(self, split: str, with_blocks: bool) -> FeatureKey:
        """What the pretrained features of ``split`` depend on (the eval transform: no seed)."""
        if split not in self._data_fingerprints:
            self._data_fingerprints[split] = dataset_fingerprint(self.split_dataset(split))
        if self._weights_sha256 is None:
            self._weights_sha256 = state_dict_sha256(self.pretrained)
        benchmark = {
            "name": self.config.benchmark,
            "options": self.config.benchmark_options,
            "data_root": str(self.config.data_root) if self.config.data_root else None,
        }
        return FeatureKey(
            backbone=self.config.model,
            weights_sha256=self._weights_sha256,
            benchmark=json.dumps(benchmark, sort_keys=True, default=str),
            split=split,
            transform=self._pipeline(train=False),
            dtype="float32",
            precision=self.config.precision,
            with_blocks=with_blocks,
            data=self._data_fingerprints[split],
            channels_last=self._use_channels_last(),
        )

    def augmented_feature_key(self, split: str, seed: int) -> FeatureKey:
        """The key of one seeded pass of ``split`` through the training transform (stored or
        streamed: the same numbers)."""
        return dataclasses.replace(
            self.feature_key(split, False),
            transform=self._pipeline(train=True),
            seed=derive_seed(seed, "features"),
            augment_pass=0,
        )

    def _pipeline(self, train: bool) -> str:
        """What a split's images go through, for cache keys: stored pixels, the training
        policy's crop and flip, normalisation."""
        spec = self.pretrained.input_spec
        steps = [repr(pixel_transform(self.benchmark.augment, spec, train))]
        if train:
            steps.append(repr(crop_flip(self.benchmark.augment, spec)))
        return " then ".join([*steps, repr(NormalisePixels(spec))])

    @property
    def _store_max_bytes(self) -> int:
        """Splits up to this size (uint8 pixels) are stored, larger ones streamed."""
        return self.config.store_max_mb * 2**20

    def split_dataset(self, split: str) -> Dataset:
        """A split by name: ``id_train``, ``id_val``, ``id_test``, an OOD set, or
        ``ood_val:NAME`` for an OOD validation set."""
        if split == "id_train":
            return self.benchmark.id_train
        if split == "id_val":
            return self.benchmark.id_val
        if split.startswith(OOD_VAL_PREFIX):
            return self.benchmark.ood_val[split.removeprefix(OOD_VAL_PREFIX)].dataset
        return self.benchmark.eval_splits()[split].dataset

    def eval_loader(self, split: str) -> BatchedLoader:
        """Under torchrun, each process reads its shard and the forward pass gathers them."""
        dataset = self.prepared(split)
        return BatchedLoader(dataset, self.config.eval_batch_size, shard_sampler(len(dataset)))

    def prepared(self, split: str) -> BatchedSplit:
        """``split`` through the eval pipeline, made once (streamed splits read every epoch keep
        their loader workers)."""
        if split not in self._prepared:
            every_epoch = split in EVERY_EPOCH_SPLITS
            self._prepared[split] = self.batched(self.split_dataset(split), every_epoch)
        return self._prepared[split]

    def batched(self, dataset: Dataset, persistent: bool = False) -> BatchedSplit:
        """Any dataset of (image, label) through the eval pipeline: stored once as uint8 pixels
        when small, else streamed by loader workers (kept between passes if ``persistent``)."""
        spec = self.pretrained.input_spec
        pixels = pixel_transform(self.benchmark.augment, spec, train=False)
        if len(dataset) * spec.channels * spec.size * spec.size > self._store_max_bytes:
            workers = self.config.num_workers
            return StreamedImages(
                dataset, pixels, spec, self.device, num_workers=workers, persistent=persistent
            )
        stored = store_images(dataset, pixels)
        return ResidentImages(stored, spec, self.device, budget=self._device_budget)

    def _storable_for_training(self, split: str) -> bool:
        """Whether ``split`` is small enough to store before the training policy's random steps
        (estimated from the stored short side, without reading an image)."""
        spec = self.pretrained.input_spec
        side = short_side(spec)
        estimate = len(self.split_dataset(split)) * spec.channels * side * side * 4 / 3
        return estimate <= self._store_max_bytes

    def _stored_training_pixels(self, split: str) -> StoredImages | None:
        """``split``'s pixels before the training policy's random steps (None: too large)."""
        if split not in self._stored_for_training:
            stored = None
            if self._storable_for_training(split):
                spec = self.pretrained.input_spec
                pixels = pixel_transform(self.benchmark.augment, spec, train=True)
                stored = store_images(self.split_dataset(split), pixels, cropped=True)
                stored = placed(stored, self.device, self._device_budget)
            self._stored_for_training[split] = stored
        return self._stored_for_training[split]

    def _augmented_split(self, split: str, seed: int) -> BatchedSplit:
        """``split`` through the training policy, each image's draws from (seed, epoch, index):
        from stored pixels, or streamed by loader workers (one set for the whole run, kept
        between passes) when the split is too large to store."""
        spec = self.pretrained.input_spec
        crop = crop_flip(self.benchmark.augment, spec)
        stored = self._stored_training_pixels(split)
        if stored is not None:
            return ResidentImages(stored, spec, self.device, crop, seed, self._device_budget)
        if split not in self._streamed_for_training:
            pixels = pixel_transform(self.benchmark.augment, spec, train=True)
            dataset, workers = self.split_dataset(split), self.config.num_workers
            self._streamed_for_training[split] = StreamedImages(
                dataset, pixels, spec, self.device, crop, num_workers=workers, persistent=True
            )
        return self._streamed_for_training[split].with_seed(seed)

    def augmented_loader(self, split: str, seed: int) -> BatchedLoader | None:
        """One pass of ``split`` through the training transform, in order, augmentation seeded
        by ``seed``; None when the benchmark's training transform is deterministic."""
        if self.benchmark.augment in DETERMINISTIC_POLICIES:
            return None
        make = functools.partial(self._augmented_split, split, derive_seed(seed, "features"))
        return BatchedLoader(make, self.config.eval_batch_size)

    def train_dataset(self, seed: int) -> BatchedSplit:
        if self.benchmark.augment in DETERMINISTIC_POLICIES:
            return self.prepared("id_train")
        return self._augmented_split("id_train", seed)

    def fresh_backbone(self) -> Backbone:
        """An independent copy of the pretrained backbone for one fine-tuning cell.

        Compiled when asked: only ``forward`` is, so parameter names and checkpoints stay the
        same as without compilation.
        """
        backbone = copy.deepcopy(self.pretrained)
        if self.config.compile:
            backbone.forward = torch.compile(backbone.forward)
        return backbone

    def _use_channels_last(self) -> bool:
        has_convolutions = any(isinstance(m, torch.nn.Conv2d) for m in self.pretrained.modules())
        wanted = self.config.channels_last == "on" or (
            self.config.channels_last == "auto" and self.device.type == "cuda"
        )
        return has_convolutions and wanted
