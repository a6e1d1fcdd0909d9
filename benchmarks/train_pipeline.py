"""Fine-tuning throughput with data: lpft's loop against a bare loop and a hand-written one.

All three train the same network (torchvision ResNet-50 with random weights; with ``--quick``
lpft's small grayscale GlyphResNet) at the same batch size and precision on the same JPEG
folder, generated here (``--n`` images of ``--image`` pixels, 10 classes):

* lpft: ``FineTuner`` fed as a run feeds it: the folder decoded once into uint8 pixels
  (``store_images``), batches gathered, randomly resized-cropped and flipped, and normalised on
  the device, plus each epoch's validation pass and checkpoints; with ``--streamed``, as a run
  feeds a split too large to store: ``--workers`` loader processes decode and pad each batch,
  the device crops, flips and normalises it;
* bare: forward, loss, backward and optimiser steps on batches already on the device;
* hand: torchvision ``ImageFolder`` + ``DataLoader`` (``--workers``) with RandomResizedCrop,
  flip, ToTensor and Normalize per image, batches copied to the device.

Steady state: images/s over epochs 2..``--epochs`` (the first epoch, with its warm-up and worker
start, is left out); each loop's best of ``--rounds`` rounds, the three loops taking turns, so
that a slow spell of a shared machine does not fall on one of them. The last line reads
``lpft/bare X.XX  lpft/hand Y.YY``.

    python benchmarks/train_pipeline.py --quick            # CPU, small grayscale ResNet, 32 px
    python benchmarks/train_pipeline.py --device cuda      # ResNet-50, bf16, channels-last
    python benchmarks/train_pipeline.py --quick --streamed # the path of splits too large to store
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from ft_loop import lpft_loop, synchronize
from lpft.data.folder import ImageFileDataset
from lpft.data.transforms import crop_flip, pixel_transform
from lpft.models import Classifier, create_backbone
from lpft.models.glyph_resnet import GlyphResNet
from lpft.training.features import autocast
from lpft.training.resident import (
    BatchedLoader,
    BatchedSplit,
    ResidentImages,
    StreamedImages,
    store_images,
)
from lpft.training.trainer import TrainingOptions, build_optimizer

CLASSES = 10


def write_folder(root: Path, n: int, size: int) -> list[tuple[str, int]]:
    """``n`` random-texture JPEGs in ``root/<class>/``; (path, label) pairs."""
    rng = np.random.default_rng(0)
    samples = []
    for index in range(n):
        label = index % CLASSES
        directory = root / f"class{label}"
        directory.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((size, size), Image.BILINEAR)
        path = directory / f"{index:05d}.jpg"
        image.save(path, quality=90)
        samples.append((str(path), label))
    return sorted(samples)


def model_for(args: argparse.Namespace, device: torch.device) -> Classifier:
    torch.manual_seed(0)
    if args.model == "glyph":  # lpft's small grayscale ResNet, for --quick on CPUs
        backbone = GlyphResNet((16, 32, 64), 1, args.size)
    else:
        backbone = create_backbone(f"torchvision:{args.model}?weights=random")
        backbone.input_spec = dataclasses.replace(backbone.input_spec, size=args.size)
    model = Classifier(backbone, CLASSES).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def per_epoch_times(run_epoch, epochs: int, device: torch.device) -> list[float]:
    times = []
    for epoch in range(epochs):
        synchronize(device)
        started = time.perf_counter()
        run_epoch(epoch)
        synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def steady(images_per_epoch: int, times: list[float]) -> float:
    return images_per_epoch * (len(times) - 1) / sum(times[1:])


def step(model, optimizer, images, labels, dtype, device) -> None:
    with autocast(device, dtype):
        loss = F.cross_entropy(model(images).float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bare(args, device, dtype, options) -> float:
    model = model_for(args, device)
    optimizer = build_optimizer(model, options, 1e-3)
    steps = args.n // args.batch_size
    memory = torch.channels_last if args.channels_last else torch.contiguous_format
    shape = (args.batch_size, model.backbone.input_spec.channels, args.size, args.size)
    images = [
        torch.randn(shape, device=device).contiguous(memory_format=memory) for _ in range(steps)
    ]
    labels = torch.randint(0, CLASSES, (steps, args.batch_size), device=device)
    model.train()

    def epoch(_index: int) -> None:
        for batch in range(steps):
            step(model, optimizer, images[batch], labels[batch], dtype, device)

    return steady(steps * args.batch_size, per_epoch_times(epoch, args.epochs, device))


def hand(args, device, dtype, options, root: Path) -> float:
    model = model_for(args, device)
    optimizer = build_optimizer(model, options, 1e-3)
    spec = model.backbone.input_spec
    transform = v2.Compose(
        [
            v2.RandomResizedCrop(args.size, antialias=True),
            v2.Grayscale(1) if spec.channels == 1 else v2.RGB(),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(spec.mean, spec.std),
        ]
    )
    loader = DataLoader(
        datasets.ImageFolder(root, transform),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )
    model.train()

    def epoch(_index: int) -> None:
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            step(model, optimizer, images, labels.to(device, non_blocking=True), dtype, device)

    steps = args.n // args.batch_size
    return steady(steps * args.batch_size, per_epoch_times(epoch, args.epochs, device))


def lpft_data(args, device, samples) -> tuple[BatchedSplit, BatchedLoader, float]:
    """(training split, validation loader, seconds to store the folder) as a run builds them."""
    spec = model_for(args, device).backbone.input_spec
    pixels, crop = pixel_transform("rrc_flip", spec, True), crop_flip("rrc_flip", spec)
    started = time.perf_counter()
    if args.streamed:
        train = StreamedImages(
            ImageFileDataset(samples), pixels, spec, device, crop, 0, args.workers, persistent=True
        )
    else:
        stored = store_images(ImageFileDataset(samples), pixels, cropped=True)
        train = ResidentImages(stored, spec, device, crop, seed=0)
    eval_stored = store_images(
        ImageFileDataset(samples[: args.batch_size]), pixel_transform("rrc_flip", spec, False)
    )
    store_seconds = time.perf_counter() - started
    val = BatchedLoader(ResidentImages(eval_stored, spec, device), args.batch_size)
    return train, val, store_seconds


def lpft(args, device, dtype, train: BatchedSplit, val: BatchedLoader) -> float:
    """Steady-state images/s: a 1-epoch cell's time taken from an ``--epochs`` cell's."""
    times = [
        lpft_loop(
            model_for(args, device),
            train,
            val,
            TrainingOptions(epochs=epochs, batch_size=args.batch_size),
            1e-3,
            device,
            dtype,
        )
        for epochs in (1, args.epochs)
    ]
    images = (args.n // args.batch_size) * args.batch_size * (args.epochs - 1)
    return images / (times[1] - times[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="CPU: small ResNet, 640 images")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--n", type=int, default=3200)
    parser.add_argument("--image", type=int, default=256, help="JPEG side in pixels")
    parser.add_argument("--size", type=int, default=224, help="network input side")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None)
    parser.add_argument(
        "--streamed", action="store_true", help="lpft streams the folder (--workers processes)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="best of this many, interleaved")
    args = parser.parse_args()
    if args.quick:
        args.model, args.n, args.image, args.size, args.batch_size = "glyph", 640, 48, 32, 32
        args.epochs, args.workers = 3, 2
    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    dtype = torch.bfloat16 if precision == "bf16" else None
    args.channels_last = device.type == "cuda"
    options = TrainingOptions(epochs=args.epochs, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        samples = write_folder(root, args.n, args.image)
        train, val, store_seconds = lpft_data(args, device, samples)
        speeds: dict[str, list[float]] = {"lpft": [], "bare": [], "hand": []}
        for _ in range(args.rounds):
            speeds["lpft"].append(lpft(args, device, dtype, train, val))
            speeds["bare"].append(bare(args, device, dtype, options))
            speeds["hand"].append(hand(args, device, dtype, options, root))
        ours, baseline, handmade = (max(speeds[name]) for name in ("lpft", "bare", "hand"))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        f"device {device} ({name}), {args.model}, {precision}, {args.n} JPEGs of {args.image}px "
        f"-> {args.size}px, batch {args.batch_size}, rrc_flip, {args.epochs} epochs, "
        f"best of {args.rounds} interleaved rounds"
    )
    if not args.streamed:
        print(f"  folder stored as uint8 in {store_seconds:.2f} s")
    feed = f"streamed, {args.workers} wkrs" if args.streamed else "stored"
    rows = [
        ("bare loop (batches on the device)", "bare", ""),
        ("hand-written ImageFolder loop", "hand", f", {args.workers} wkrs"),
        ("lpft FineTuner (incl. validation)", "lpft", f", {feed}"),
    ]
    for label, name, extra in rows:
        each = ", ".join(f"{speed:,.0f}" for speed in speeds[name])
        print(f"  {label + ':':35} {max(speeds[name]):8,.0f} images/s{extra} (rounds: {each})")
    print(f"lpft/bare {ours / baseline:.2f}  lpft/hand {ours / handmade:.2f}")


if __name__ == "__main__":
    main()
