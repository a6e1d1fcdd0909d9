"""Data loading whose randomness depends only on (seed, epoch, position).

Augmentation is seeded per sample and shuffling per epoch, so a run gives the same batches
whatever the number of workers, and a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lpft.training.runtime import derive_seed


class TransformedDataset(Dataset):
    """Applies ``transform`` to each image; when ``seed`` is set, with a per-sample RNG seed."""

    def __init__(self, dataset: Dataset, transform: Callable, seed: int | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """``key`` is an index (augmented as in ``self.epoch``) or an (epoch, index) pair."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        image, label = self.dataset[index]
        if self.seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, epoch, index))
            return self.transform(image), label


class TensorImageDataset(Dataset):
    """Images already transformed into one tensor, for small datasets with a deterministic
    pipeline: the per-image PIL work is done once instead of every epoch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch by one tensor index (DataLoader calls this instead of per item)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> TensorImageDataset:
        items = [dataset[i] for i in range(len(dataset))]
        return cls(
            torch.stack([image for image, _ in items]),
            torch.tensor([label for _, label in items], dtype=torch.long),
        )


class EpochSampler(Sampler[int]):
    """A fresh permutation per epoch from (seed, epoch), optionally starting mid-epoch."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "shuffle", self.epoch))
        order = torch.randperm(self.size, generator=generator)
        return iter(order[self.start :].tolist())

    def __len__(self) -> int:
        return self.size - self.start


class EpochKeys(Sampler[tuple[int, int]]):
    """``sampler``'s indices paired with its epoch. Loader workers keep the copy of the dataset
    they started with (persistent across epochs), so the epoch must travel with each index for
    augmentation to follow it whatever the number of workers."""

    def __init__(self, sampler: EpochSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def _batch_as_is(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def _loader_options(dataset: Dataset, num_workers: int) -> dict:
    """In-memory tensors are batched by one index operation in the main process. Each loader
    has its own generator, so creating iterators never draws from the global torch RNG."""
    if isinstance(dataset, TensorImageDataset):
        options = {"num_workers": 0, "collate_fn": _batch_as_is}
    else:
        options = {
            "num_workers": num_workers,
            "pin_memory": torch.cuda.is_available(),
            # Workers outlive an epoch: a loader reused every epoch does not respawn them.
            "persistent_workers": num_workers > 0,
        }
    return options | {"generator": torch.Generator()}


def train_loader(
    dataset: Dataset, sampler: EpochSampler, batch_size: int, num_workers: int
) -> DataLoader:
    """Seeded augmentation is keyed by (epoch, index) from ``sampler`` (``EpochKeys``)."""
    seeded = isinstance(dataset, TransformedDataset) and dataset.seed is not None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochKeys(sampler) if seeded else sampler,
        drop_last=len(dataset) > batch_size,
        **_loader_options(dataset, num_workers),
    )


def eval_loader(
    dataset: Dataset, batch_size: int, num_workers: int, sampler: Sampler[int] | None = None
) -> DataLoader:
    """In dataset order; ``sampler`` restricts it to a subset (e.g. this process's shard)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        **_loader_options(dataset, num_workers),
    )
