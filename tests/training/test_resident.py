"""Splits stored once as uint8 and served in batches: the same numbers as the per-image
pipeline, the same draws as torchvision, and no device read inside the training loop."""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.overrides import TorchFunctionMode
from torchvision.transforms import v2

from lpft.data.transforms import build_transform, crop_flip, pixel_transform
from lpft.models import Classifier, InputSpec
from lpft.models.glyph_resnet import GlyphResNet
from lpft.training.loaders import TensorImageDataset, TransformedDataset
from lpft.training.resident import (
    BatchedLoader,
    DeviceBudget,
    ResidentImages,
    StreamedImages,
    store_images,
)
from lpft.training.trainer import FineTuner, TrainingOptions

CPU = torch.device("cpu")
NATURAL = InputSpec(size=16, channels=3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25), crop_pct=0.8)
READS = {"item", "__float__", "__bool__", "__int__", "__index__", "tolist", "cpu", "numpy"}


class Photos(torch.utils.data.Dataset):
    """RGB images of several sizes and aspect ratios, and labels 0-2."""

    def __init__(self, count: int = 12) -> None:
        rng = np.random.default_rng(0)
        shapes = [(30, 40), (40, 30), (25, 25), (50, 20)]
        self.images = [
            rng.integers(0, 256, (*shapes[i % 4], 3), dtype=np.uint8) for i in range(count)
        ]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return Image.fromarray(self.images[index]), index % 3


def per_image(dataset, transform, epoch: int = 0) -> torch.Tensor:
    seeded = TransformedDataset(dataset, transform, seed=7)
    return torch.stack([seeded[epoch, i][0] for i in range(len(dataset))])


def resident(dataset, policy: str, train: bool, seed: int | None = 7) -> ResidentImages:
    stored = store_images(dataset, pixel_transform(policy, NATURAL, train), cropped=train)
    crop = crop_flip(policy, NATURAL) if train else None
    return ResidentImages(stored, NATURAL, CPU, crop, seed)


def all_batches(data: ResidentImages, epoch: int, batch_size: int) -> torch.Tensor:
    order = list(range(len(data)))
    return torch.cat([images for images, _ in data.batches(order, epoch, batch_size)])


@pytest.mark.parametrize("policy", ["none", "rrc_flip"])
def test_uint8_storage_equals_the_float_pipeline(policy: str) -> None:
    photos = Photos()
    floats = TensorImageDataset.from_dataset(
        TransformedDataset(photos, build_transform(policy, NATURAL, train=False))
    )
    stored = resident(photos, policy, train=False)
    assert stored.images.pixels.dtype == torch.uint8
    torch.testing.assert_close(all_batches(stored, 0, 5), floats.images, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["rrc_flip", "resize_crop_flip"])
def test_crops_and_flips_are_drawn_as_torchvision_draws_them(kind: str) -> None:
    crop = crop_flip(kind, NATURAL)
    first = (
        v2.RandomResizedCrop(NATURAL.size) if kind == "rrc_flip" else v2.RandomCrop(NATURAL.size)
    )
    for seed in range(100):
        height, width = 20 + seed % 17, 20 + seed % 29
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            params = first.make_params([torch.empty(0, height, width)])
            flip = int(torch.rand(1) < 0.5)
        expected = (params["top"], params["left"], params["height"], params["width"], flip)
        drawn = crop.draw(torch.Generator().manual_seed(seed), height, width)
        assert drawn == expected, seed


@pytest.mark.parametrize("policy", ["rrc_flip", "resize_crop_flip"])
def test_stored_batches_equal_the_per_image_pipeline(policy: str) -> None:
    """``build_transform`` does to one image what a run does to a batch: the same draws and
    operations, the same inputs up to float rounding."""
    photos = Photos()
    data = resident(photos, policy, train=True)
    transform = build_transform(policy, NATURAL, train=True)
    atol = 0 if policy == "resize_crop_flip" else 1e-5  # whole-pixel boxes: plain copies
    for epoch in (0, 3):
        expected = per_image(photos, transform, epoch)
        torch.testing.assert_close(all_batches(data, epoch, 5), expected, rtol=0, atol=atol)
    assert not torch.allclose(per_image(photos, transform, 1), expected), "epochs draw anew"


def test_batches_depend_on_seed_epoch_and_index_only() -> None:
    """Whatever the batch size or the order they are asked in (as loader workers would)."""
    data = resident(Photos(), "rrc_flip", train=True)
    whole = all_batches(data, 2, 12)
    torch.testing.assert_close(all_batches(data, 2, 5), whole, rtol=0, atol=1e-5)
    backwards = list(range(12))[::-1]
    images, _ = next(data.batches(backwards, 2, 12))
    torch.testing.assert_close(images.flip(0), whole, rtol=0, atol=1e-5)
    assert not torch.allclose(all_batches(data, 3, 12), whole), "a new epoch draws anew"
    again = resident(Photos(), "rrc_flip", train=True)
    assert torch.equal(all_batches(again, 2, 12), whole)


def test_random_resized_crops_follow_the_per_image_boxes() -> None:
    """A crop covering a whole constant-coloured half gives that colour, flipped or not."""
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[:, 20:] = 200
    photos = [(Image.fromarray(pixels), 0)] * 64
    data = resident(photos, "rrc_flip", train=True)
    boxes = data.boxes(list(range(64)), epoch=0)
    images = all_batches(data, 0, 64) * torch.tensor(NATURAL.std)[:, None, None]
    images += torch.tensor(NATURAL.mean)[:, None, None]
    half = data.images.sizes[0][1] / 2  # stored at the eval short side
    for box, image in zip(boxes, images, strict=True):
        x1, _, x2, _, flip = box.tolist()
        if x2 <= half - 2:  # (the stored image's resize blurs the columns next to the edge)
            assert image.abs().max() < 1e-5, (x1, x2)
        elif x1 >= half + 2:
            torch.testing.assert_close(image, torch.full_like(image, 200 / 255))
        elif x1 < half - 2 and x2 > half + 2:
            right, left = image[0, :, -1].mean(), image[0, :, 0].mean()
            assert (left if flip else right) > 0.5 > (right if flip else left), (x1, x2, flip)


class VariedPhotos(Photos):
    """RGB images of random sizes, so that which image is the widest or tallest in a padded
    tensor differs between the whole split and each batch."""

    def __init__(self, count: int = 40) -> None:
        rng = np.random.default_rng(1)
        self.images = [
            rng.integers(0, 256, (*rng.integers(17, 60, 2), 3), dtype=np.uint8)
            for _ in range(count)
        ]


@pytest.mark.parametrize(
    ("policy", "train"),
    [("none", False), ("rrc_flip", False), ("rrc_flip", True), ("resize_crop_flip", True)],
)
def test_streamed_splits_equal_stored_ones_bitwise(policy: str, train: bool) -> None:
    """A split too large to store is read by loader workers into padded uint8 batches,
    completed the same way: the same numbers exactly, whatever the batch size or the number of
    workers."""
    photos = VariedPhotos()
    pixels = pixel_transform(policy, NATURAL, train)
    crop = crop_flip(policy, NATURAL) if train else None
    stored = ResidentImages(store_images(photos, pixels, train), NATURAL, CPU, crop, seed=7)
    order = list(np.random.default_rng(2).permutation(len(photos)))
    expected = torch.cat([images for images, _ in stored.batches(order, 2, 4)])
    for workers, batch_size in ((0, 1), (0, 4), (2, 4)):
        streamed = StreamedImages(photos, pixels, NATURAL, CPU, crop, 7, num_workers=workers)
        batches = list(streamed.batches(order, 2, batch_size))
        images = torch.cat([images for images, _ in batches])
        assert torch.equal(images, expected), (workers, batch_size)
        labels = torch.cat([labels for _, labels in batches])
        assert labels.tolist() == [index % 3 for index in order]
    assert len(list(streamed.batches(order, 2, 16, drop_last=True))) == 2
    assert torch.equal(streamed[order[5]][0], stored[order[5]][0]), "one image on its own"


def test_one_streamed_pass_at_a_time() -> None:
    """Two interleaved passes would take each other's batches from the shared workers."""
    photos = Photos(12)
    pixels = pixel_transform("rrc_flip", NATURAL, True)
    crop = crop_flip("rrc_flip", NATURAL)
    streamed = StreamedImages(photos, pixels, NATURAL, CPU, crop, 7, num_workers=1, persistent=True)
    first = streamed.batches(list(range(12)), 0, 4)
    next(first)
    second = streamed.with_seed(8).batches(list(range(12)), 0, 4)
    next(second)
    with pytest.raises(RuntimeError, match="two passes over one streamed split at once"):
        next(first)
    abandoned = streamed.batches(list(range(12)), 1, 4)
    next(abandoned)
    del abandoned
    assert len(list(streamed.batches(list(range(12)), 1, 4))) == 3, "a dropped pass is no bar"


def test_a_split_on_an_unindexed_device_counts_as_there() -> None:
    """``cpu:0`` names the CPU as ``cuda`` names the current GPU; tensors report ``cpu`` and
    ``cuda:N``. The split must still count as on the device (else every batch would be
    gathered and pinned on the host)."""
    stored = store_images(Photos(4), pixel_transform("none", NATURAL, False))
    split = ResidentImages(stored, NATURAL, torch.device("cpu:0"))
    assert split.on_device
    assert len(split.host_parts([0, 1], 0)) == 1, "indices only"


def test_a_split_kept_in_host_memory_gives_the_batches_of_one_on_the_device(monkeypatch) -> None:
    """When the device budget refuses a split, its batches are gathered on the host and copied;
    forced here on the CPU, where both paths can run."""
    photos = Photos(20)
    pixels, crop = pixel_transform("rrc_flip", NATURAL, True), crop_flip("rrc_flip", NATURAL)
    split = ResidentImages(store_images(photos, pixels), NATURAL, CPU, crop, seed=7)
    order = [4, 9, 1, 17, 12, 0, 6]
    on_device = list(split.batches(order, 1, 3))
    monkeypatch.setattr(ResidentImages, "on_device", property(lambda self: False))
    assert len(split.host_parts(order[:3], 1)) == 4, "indices, pixels, labels and boxes"
    for (images, labels), (expected, expected_labels) in zip(
        split.batches(order, 1, 3), on_device, strict=True
    ):
        assert torch.equal(images, expected)
        assert torch.equal(labels, expected_labels)


def test_stored_splits_share_one_device_budget(monkeypatch) -> None:
    """A quarter of the free memory seen when the first split is placed, for all splits
    together: the memory they take is not counted as free again."""
    free = iter([4000, 3000])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (next(free), 8000))
    budget = DeviceBudget(torch.device("cuda"))
    assert budget.admits(600)
    assert not budget.admits(401), "600 + 401 is over 1000, a quarter of 4000"
    assert budget.admits(400)
    assert not budget.admits(1)
    assert DeviceBudget(CPU).admits(10**15), "host memory is where the pixels are anyway"


class ReadRecorder(TorchFunctionMode):
    """Device reads (a value or a copy to the host) and the lpft file that made each."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            frames = [f.filename for f in traceback.extract_stack() if "/lpft/" in f.filename]
            self.reads.append((name, Path(frames[-1]).name if frames else "test"))
        return func(*args, **(kwargs or {}))


def tiny_trainer(tmp_path: Path, policy: str, device: torch.device) -> FineTuner:
    spec = InputSpec(size=8, channels=1, mean=(0.25,), std=(0.35,), crop_pct=0.8)
    photos = Photos(48)
    stored = store_images(photos, pixel_transform(policy, spec, True), cropped=policy != "none")
    train = ResidentImages(stored, spec, device, crop_flip(policy, spec), seed=1)
    val = ResidentImages(store_images(photos, pixel_transform(policy, spec, False)), spec, device)
    torch.manual_seed(0)
    backbone = GlyphResNet(widths=(8, 8, 8), blocks_per_stage=1)
    model = Classifier(backbone, 3)
    options = TrainingOptions(epochs=1, batch_size=8)
    return FineTuner(model, options, 0.01, train, BatchedLoader(val, 16), device, tmp_path, 0)


@pytest.mark.parametrize("policy", ["none", "rrc_flip"])
def test_training_steps_read_nothing_from_the_device(tmp_path: Path, policy: str) -> None:
    """Loss and accuracy stay on the device: one read per epoch, after its last step. (The
    epoch's order, a host permutation, is listed once in loaders.py; crop draws read host
    generators in transforms.py.)"""
    trainer = tiny_trainer(tmp_path, policy, CPU)
    with ReadRecorder() as recorder:
        trainer._train_epoch()
    assert trainer.steps_per_epoch == 6
    device_reads = [read for read in recorder.reads if read[1] != "transforms.py"]
    assert device_reads == [("tolist", "loaders.py"), ("tolist", "trainer.py")]
    assert trainer.position.seen == 48


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CPU sibling above)")
@pytest.mark.parametrize("policy", ["none", "rrc_flip"])
def test_training_steps_never_synchronise_with_the_gpu(tmp_path: Path, policy: str) -> None:
    trainer = tiny_trainer(tmp_path, policy, torch.device("cuda"))
    assert trainer.train_data.on_device
    steps = iter(trainer._batches())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for images, labels in steps:
            trainer._train_step(images, labels)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer._collect_statistics()
    assert trainer.position.seen == 48
