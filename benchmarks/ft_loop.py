"""Fine-tuning loop overhead: lpft's ``FineTuner`` against a bare training loop.

Both train the same network (a GlyphResNet at the chosen width and input size) on the same
in-memory synthetic data, batch size, optimiser and per-step cosine schedule, on the same device.
The bare loop only does forward, loss, backward, optimiser and scheduler steps. ``FineTuner``
adds what a real run needs: per-epoch ID validation (on a validation set of one batch here),
best-epoch and resume checkpoints written atomically every epoch, and NaN detection. Prints both
times and their ratio; each is the best of ``--repeats`` runs after one warm-up.

    python benchmarks/ft_loop.py                       # CPU, small network
    python benchmarks/ft_loop.py --device cuda --width 64 --size 32 --n 16384 --batch-size 256
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lpft.models import Classifier
from lpft.models.glyph_resnet import GlyphResNet
from lpft.training.features import autocast
from lpft.training.loaders import EpochSampler, TensorImageDataset, eval_loader, train_loader
from lpft.training.trainer import FineTuner, TrainingOptions, build_optimizer, cosine_with_warmup

CLASSES = 10


def synthetic(n: int, size: int, seed: int) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, size, size, generator=generator)
    labels = torch.randint(0, CLASSES, (n,), generator=generator)
    return TensorImageDataset(images, labels)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(model, data, options, lr, device, dtype) -> float:
    sampler = EpochSampler(len(data), seed=0)
    loader = train_loader(data, sampler, options.batch_size, num_workers=0)
    optimizer = build_optimizer(model, options, lr)
    total = len(loader) * options.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total, 0))
    model.train()
    synchronize(device)
    started = time.perf_counter()
    for epoch in range(options.epochs):
        sampler.set_position(epoch)
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            with autocast(device, dtype):
                loss = F.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    synchronize(device)
    return time.perf_counter() - started


def lpft_loop(model, data, val_loader, options, lr, device, dtype) -> float:
    """Seconds of one ``FineTuner.fit`` in a temporary cell directory."""
    with tempfile.TemporaryDirectory() as cell:
        trainer = FineTuner(
            model,
            options,
            lr,
            data,
            val_loader,
            device,
            Path(cell),
            seed=0,
            autocast_dtype=dtype,
        )
        synchronize(device)
        started = time.perf_counter()
        trainer.fit()
        synchronize(device)
        return time.perf_counter() - started


def best_of(repeats: int, run) -> float:
    run()
    return min(run() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--width", type=int, default=32, help="channels of the first stage")
    parser.add_argument("--size", type=int, default=8, help="input height and width")
    parser.add_argument("--n", type=int, default=2048, help="training examples")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    torch.manual_seed(0)
    widths = (args.width, 2 * args.width, 4 * args.width)
    template = Classifier(GlyphResNet(widths, 2, args.size), CLASSES).to(device)
    data = synthetic(args.n, args.size, seed=0)
    val_loader = eval_loader(synthetic(args.batch_size, args.size, seed=1), args.batch_size, 0)
    options = TrainingOptions(epochs=args.epochs, batch_size=args.batch_size)
    lr = 1e-3

    bare = best_of(
        args.repeats, lambda: bare_loop(copy.deepcopy(template), data, options, lr, device, dtype)
    )
    ours = best_of(
        args.repeats,
        lambda: lpft_loop(copy.deepcopy(template), data, val_loader, options, lr, device, dtype),
    )
    steps = (args.n // args.batch_size) * args.epochs
    print(
        f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'})"
        f", {args.precision}, widths {widths}, input {args.size}x{args.size}, "
        f"batch {args.batch_size}, {steps} steps"
    )
    print(f"  bare loop:  {bare:8.3f} s  ({steps * args.batch_size / bare:,.0f} images/s)")
    print(f"  FineTuner:  {ours:8.3f} s  ({steps * args.batch_size / ours:,.0f} images/s)")
    print(f"  overhead ratio (FineTuner / bare): {ours / bare:.3f}")


if __name__ == "__main__":
    main()
