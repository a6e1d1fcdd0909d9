"""Image splits served in whole batches of uint8 pixels, augmented and normalised on the device.

A split that fits is stored once (``ResidentImages``): one (N, C, H, W) uint8 tensor, every image
at the top left, padded to the largest one by repeating its last row and column, kept on the
accelerator when it fits the run's budget. A larger split is streamed (``StreamedImages``):
loader workers decode each image to the same uint8 pixels and pad a batch the same way. Either
way, each image's crop box and flip are drawn from (seed, epoch, index) as the per-image pipeline
draws them (``CropFlip``), and a whole batch is then cropped, resized (``roi_align``, which
averages over each output pixel's footprint), flipped and normalised at once where it is
(``BatchedSplit.complete``): the batches do not depend on the path, the workers or the device.
"""

from __future__ import annotations

import copy
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lpft.data.transforms import CropFlip, crop_resize_flip, normalise_pixels
from lpft.models.backbone import InputSpec
from lpft.training.runtime import derive_seed

# Share of the accelerator's free memory a split may take when stored there.
DEVICE_BUDGET_FRACTION = 0.25
DECODE_THREADS = 8


@dataclass
class StoredImages:
    """uint8 pixels (N, C, H, W), labels, each image's stored (h, w) and source (h, w)."""

    pixels: torch.Tensor
    labels: torch.Tensor
    sizes: list[tuple[int, int]]
    source_sizes: list[tuple[int, int]]

    @property
    def nbytes(self) -> int:
        return self.pixels.numel() * self.pixels.element_size()

    def to(self, device: torch.device) -> StoredImages:
        return StoredImages(
            self.pixels.to(device), self.labels.to(device), self.sizes, self.source_sizes
        )


def _padded(images: list[torch.Tensor], cropped: bool) -> torch.Tensor:
    """One tensor, each image at the top left and edge-repeated to the largest height/width.

    Images to be ``cropped`` get one more row and column: ``roi_align`` clamps at the tensor's
    edge instead of interpolating, so an image touching it would give other last bits than the
    same image padded in another tensor (the whole stored split, or one streamed batch)."""
    height = max(image.shape[1] for image in images) + cropped
    width = max(image.shape[2] for image in images) + cropped
    if all(image.shape[1:] == (height, width) for image in images):
        return torch.stack(images)
    out = torch.empty((len(images), images[0].shape[0], height, width), dtype=torch.uint8)
    for slot, image in zip(out, images, strict=True):
        h, w = image.shape[1:]
        slot[:, :h, :w] = image
        slot[:, h:, :w] = image[:, -1:, :]
        slot[:, :, w:] = slot[:, :, w - 1 : w]
    return out


def read_pixels(
    dataset: Dataset, index: int, pixel_transform: Callable
) -> tuple[torch.Tensor, int, tuple[int, int]]:
    """Image ``index`` of ``dataset`` as uint8 pixels, its label and its source (height, width)."""
    image, label = dataset[index]
    return pixel_transform(image).as_subclass(torch.Tensor), label, image.size[::-1]


def store_images(
    dataset: Dataset, pixel_transform: Callable, cropped: bool = False
) -> StoredImages:
    """Every image of ``dataset`` through ``pixel_transform`` (PIL -> uint8), in threads;
    ``cropped``: padded for batches that will be cropped."""
    read = functools.partial(read_pixels, dataset, pixel_transform=pixel_transform)
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        items = list(pool.map(read, range(len(dataset))))
    images = [pixels for pixels, _, _ in items]
    return StoredImages(
        pixels=_padded(images, cropped),
        labels=torch.tensor([label for _, label, _ in items], dtype=torch.long),
        sizes=[tuple(image.shape[1:]) for image in images],
        source_sizes=[source for _, _, source in items],
    )


class DeviceBudget:
    """The bytes that all the splits a run stores on one accelerator may take together: a share
    of its free memory when the first split is placed, so that stored splits never crowd out
    training, however many there are."""

    def __init__(self, device: torch.device, fraction: float = DEVICE_BUDGET_FRACTION) -> None:
        self.device = device
        self.fraction = fraction
        self.limit: float | None = None
        self.used = 0

    def admits(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more fit (then they are counted as taken). On the CPU, always:
        the pixels are in host memory anyway."""
        if self.device.type != "cuda":
            return True
        if self.limit is None:
            free, _total = torch.cuda.mem_get_info(self.device)
            self.limit = self.fraction * free
        if self.used + nbytes > self.limit:
            return False
        self.used += nbytes
        return True


def resolved(device: torch.device) -> torch.device:
    """``device`` as the tensors placed on it name it (``cuda`` -> ``cuda:N``, ``cpu:0`` ->
    ``cpu``), so that comparing it with a tensor's device says whether the tensor is there."""
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def placed(
    images: StoredImages, device: torch.device, budget: DeviceBudget | None = None
) -> StoredImages:
    """``images`` on ``device`` when they are there already or fit ``budget`` (default: a budget
    of their own), else in host memory (each batch gathered there is pinned on CUDA hosts)."""
    device = resolved(device)
    budget = budget or DeviceBudget(device)
    if images.pixels.device == device or budget.admits(images.nbytes):
        return images.to(device)
    return images.to(torch.device("cpu"))


def to_device(batch: tuple[torch.Tensor, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(part.to(device, non_blocking=True) for part in batch)


def prefetched(
    batches: Iterator[tuple[torch.Tensor, ...]], device: torch.device
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Host batches moved to ``device``; on CUDA the next one is copied on a side stream while
    the current one is used (copies overlap compute; pinned host memory makes them async)."""
    if device.type != "cuda":
        yield from (to_device(batch, device) for batch in batches)
        return
    stream = torch.cuda.Stream(device)
    main = torch.cuda.current_stream(device)
    ahead = None
    for batch in batches:
        with torch.cuda.stream(stream):
            copied = to_device(batch, device)
        if ahead is not None:
            yield ahead
        main.wait_stream(stream)
        for part in copied:
            part.record_stream(main)
        ahead = copied
    if ahead is not None:
        yield ahead


def drawn_box(
    crop: CropFlip,
    seed: int | None,
    key: tuple[int, int],
    stored: tuple[int, int],
    source: tuple[int, int],
) -> tuple[float, ...]:
    """Image ``key`` = (epoch, index)'s crop box and flip, from its own generator."""
    generator = torch.Generator().manual_seed(derive_seed(seed, *key))
    return crop.box(generator, stored, source)


class BatchedSplit(Dataset, ABC):
    """A split served in batches: ``batches(order, epoch, batch_size)`` gives (normalised
    images, labels) on ``device``, each image cropped and flipped from (seed, epoch, index) when
    ``crop`` is given."""

    def __init__(
        self,
        spec: InputSpec,
        device: torch.device,
        crop: CropFlip | None = None,
        seed: int | None = None,
    ) -> None:
        self.device = resolved(device)
        self.crop = crop
        self.seed = seed
        shape = (-1, 1, 1)
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(shape)
        self.output_size = spec.size

    @abstractmethod
    def batches(
        self, order: list[int], epoch: int, batch_size: int, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``order`` cut into batches (the last partial one dropped when ``drop_last``)."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images, labels = next(self.batches([index], epoch=0, batch_size=1))
        return images[0], int(labels[0])

    def complete(
        self, pixels: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch's work where its pixels are: crop/resize/flip, normalise."""
        if boxes is not None:
            pixels = crop_resize_flip(pixels, boxes, self.output_size)
        return normalise_pixels(pixels, self.mean, self.std), labels


def cut(order: list[int], batch_size: int, drop_last: bool) -> list[list[int]]:
    """``order`` in batches of ``batch_size`` (the last partial one dropped when ``drop_last``)."""
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    return [order[start : start + batch_size] for start in range(0, stop, batch_size)]


class ResidentImages(BatchedSplit):
    """A stored split. The pixels stay on ``device`` if ``budget`` admits them, else in host
    memory, copied batch by batch."""

    def __init__(
        self,
        images: StoredImages,
        spec: InputSpec,
        device: torch.device,
        crop: CropFlip | None = None,
        seed: int | None = None,
        budget: DeviceBudget | None = None,
    ) -> None:
        super().__init__(spec, device, crop, seed)
        self.images = placed(images, device, budget)

    def __len__(self) -> int:
        return len(self.images.labels)

    @property
    def on_device(self) -> bool:
        return self.images.pixels.device == self.device

    def boxes(self, indices: list[int], epoch: int) -> torch.Tensor:
        """(x1, y1, x2, y2, flip) per image in stored pixel coordinates."""
        sizes, sources = self.images.sizes, self.images.source_sizes
        rows = [drawn_box(self.crop, self.seed, (epoch, i), sizes[i], sources[i]) for i in indices]
        return torch.tensor(rows, dtype=torch.float32)

    def host_parts(self, indices: list[int], epoch: int) -> tuple[torch.Tensor, ...]:
        """What a batch needs from the host: its indices and crop boxes, and its pixels and
        labels when the split is kept in host memory (pinned on CUDA hosts)."""
        index = torch.tensor(indices, dtype=torch.long)
        parts = [index]
        if not self.on_device:
            parts += [self.images.pixels[index], self.images.labels[index]]
        if self.crop is not None:
            parts.append(self.boxes(indices, epoch))
        if self.device.type == "cuda":
            parts = [part.pin_memory() for part in parts]
        return tuple(parts)

    def finish(self, parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Device-side work on one batch: gather, then ``complete``."""
        index, *rest = parts
        if self.on_device:
            pixels, labels = self.images.pixels[index], self.images.labels[index]
        else:
            pixels, labels, *rest = rest
        return self.complete(pixels, labels, rest[0] if rest else None)

    def batches(
        self, order: list[int], epoch: int, batch_size: int, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        host = (self.host_parts(indices, epoch) for indices in cut(order, batch_size, drop_last))
        for parts in prefetched(host, self.device):
            yield self.finish(parts)


class ImageReads(Dataset):
    """What a loader worker reads for a streamed split: keyed by (seed, epoch, index), an
    image's uint8 pixels, its label and (when ``crop`` is given) its drawn box."""

    def __init__(self, dataset: Dataset, pixel_transform: Callable, crop: CropFlip | None) -> None:
        self.dataset = dataset
        self.pixel_transform = pixel_transform
        self.crop = crop

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(
        self, key: tuple[int | None, int, int]
    ) -> tuple[torch.Tensor, int, tuple | None]:
        seed, epoch, index = key
        pixels, label, source = read_pixels(self.dataset, index, self.pixel_transform)
        if self.crop is None:
            return pixels, label, None
        stored = tuple(pixels.shape[1:])
        return pixels, label, drawn_box(self.crop, seed, (epoch, index), stored, source)


def padded_batch(items: list[tuple[torch.Tensor, int, tuple | None]]) -> tuple[torch.Tensor, ...]:
    """Worker-side collation: pixels padded as a stored split pads them, labels, boxes."""
    pixels = _padded([image for image, _, _ in items], cropped=items[0][2] is not None)
    labels = torch.tensor([label for _, label, _ in items], dtype=torch.long)
    if items[0][2] is None:
        return pixels, labels
    return pixels, labels, torch.tensor([box for _, _, box in items], dtype=torch.float32)


class KeyBatches(Sampler[list[tuple[int | None, int, int]]]):
    """The (seed, epoch, index) batches of the pass about to start (set before each pass)."""

    def __init__(self) -> None:
        self.keys: list[list[tuple[int | None, int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int | None, int, int]]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class StreamedImages(BatchedSplit):
    """A split too large to store: ``num_workers`` loader processes read, decode and pad each
    batch's uint8 pixels (and draw its boxes) while the device completes the previous one.
    ``persistent`` keeps the workers between passes; ``with_seed`` gives the same split and
    workers drawing from another seed. One pass at a time."""

    def __init__(
        self,
        dataset: Dataset,
        pixel_transform: Callable,
        spec: InputSpec,
        device: torch.device,
        crop: CropFlip | None = None,
        seed: int | None = None,
        num_workers: int = 0,
        persistent: bool = False,
    ) -> None:
        super().__init__(spec, device, crop, seed)
        self.reads = ImageReads(dataset, pixel_transform, crop)
        self.keys = KeyBatches()
        # Its own generator: starting a pass never draws from the global torch RNG.
        self.loader = DataLoader(
            self.reads,
            batch_sampler=self.keys,
            collate_fn=padded_batch,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=persistent and num_workers > 0,
            generator=torch.Generator(),
        )

    def __len__(self) -> int:
        return len(self.reads)

    def with_seed(self, seed: int | None) -> StreamedImages:
        view = copy.copy(self)
        view.seed = seed
        return view

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """One image, read here (no loader pass)."""
        parts = [part.to(self.device) for part in padded_batch([self.reads[self.seed, 0, index]])]
        images, labels = self.complete(parts[0], parts[1], parts[2] if len(parts) > 2 else None)
        return images[0], int(labels[0])

    def batches(
        self, order: list[int], epoch: int, batch_size: int, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        keys = [
            [(self.seed, epoch, index) for index in indices]
            for indices in cut(order, batch_size, drop_last)
        ]
        self.keys.keys = keys
        for pixels, labels, *boxes in prefetched(iter(self.loader), self.device):
            if self.keys.keys is not keys:
                raise RuntimeError(
                    "two passes over one streamed split at once: finish or drop one pass "
                    "before starting the next"
                )
            yield self.complete(pixels, labels, boxes[0] if boxes else None)


class BatchedLoader:
    """A loader-like pass over a ``BatchedSplit`` in order (or over ``sampler``'s indices,
    e.g. this process's shard): normalised batches already on the device. Given a function,
    the split is made when first needed (so a loader whose outputs are found in a cache reads
    no image)."""

    def __init__(
        self,
        dataset: BatchedSplit | Callable[[], BatchedSplit],
        batch_size: int,
        sampler: Sampler[int] | None = None,
        epoch: int = 0,
    ) -> None:
        self._dataset = dataset
        self.batch_size = batch_size
        self.sampler = sampler
        self.epoch = epoch

    @cached_property
    def dataset(self) -> BatchedSplit:
        if isinstance(self._dataset, BatchedSplit):
            return self._dataset
        return self._dataset()

    def _indices(self) -> Sampler[int] | range:
        return self.sampler if self.sampler is not None else range(len(self.dataset))

    def __len__(self) -> int:
        return -(-len(self._indices()) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.dataset.batches(list(self._indices()), self.epoch, self.batch_size)
