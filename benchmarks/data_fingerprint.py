"""What the feature cache's data fingerprint costs: one stat per file against decoding the files.

Writes ``--n`` tiny PNGs (``--size`` pixels square) into a ``folder`` benchmark under a
temporary data root, builds it without verifying images, and times ``dataset_fingerprint`` of ID
train (its first call, and the best of ``--repeats`` more; the files were just written, so both
read stat data from the file system's cache) against decoding every one of
those images once, the least that extracting their features costs. Prints both times, the
per-file cost and the ratio; then the fingerprint of every split of the embedded digits-shift
benchmark (in-memory arrays), the one the default ``lpft run`` pays.

    python benchmarks/data_fingerprint.py
    python benchmarks/data_fingerprint.py --n 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lpft.data import BuildContext, create_benchmark, dataset_fingerprint, lpft_home
from lpft.data.folder import decode


def write_pngs(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", 10), ("ood/other", 10)):
        for i in range(count):
            path = root / split / f"class{i % 10}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def timed(function, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "data"
        write_pngs(root, args.n, args.size)
        options = {"verify_images": False}
        benchmark = create_benchmark("folder", options, BuildContext(root, root / ".c", False))
        train = benchmark.id_train
        first = timed(lambda: dataset_fingerprint(train))
        best = timed(lambda: dataset_fingerprint(train), args.repeats)
        paths = [path for path, _ in train.samples]
        decoding = timed(lambda: [decode(path) for path in paths])
    print(f"folder benchmark: {len(train)} PNGs of {args.size}x{args.size} in ID train")
    for label, seconds in (
        ("fingerprint (first)", first),
        ("fingerprint (best)", best),
        ("decode every image", decoding),
    ):
        print(f"  {label}  {seconds * 1e3:9.1f} ms  {seconds / len(train) * 1e6:6.1f} us/file")
    print(f"  ratio fingerprint / decode: {best / decoding:.3f}")

    digits = create_benchmark("digits-shift", {}, BuildContext(None, lpft_home(), False))
    splits = {"id_train": digits.id_train, "id_val": digits.id_val, "id_test": digits.id_test}
    splits |= {name: split.dataset for name, split in digits.ood.items()}
    total = timed(lambda: [dataset_fingerprint(d) for d in splits.values()], args.repeats)
    rows = sum(len(d) for d in splits.values())
    print(
        f"digits-shift: every split ({rows} images in memory) fingerprinted in {total * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
