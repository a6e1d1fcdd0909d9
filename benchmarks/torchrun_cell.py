"""One fine-tuning cell run directly and through torchrun with one process.

Both runs train the same FT cell of ``digits-shift --quick`` (one seed, one learning rate) in a
fresh run directory; the torchrun run goes through DistributedDataParallel, the sharded
evaluation and the rank-0-only writes. Prints both wall times (process start to exit, so
interpreter and import time are included in each) and their ratio.

    python benchmarks/torchrun_cell.py                      # whatever device ``auto`` picks
    python benchmarks/torchrun_cell.py --device cuda --epochs 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cell_command(out: Path, device: str, epochs: int) -> list[str]:
    return [
        "-m", "lpft", "run", "--quick", "--seeds", "1", "--methods", "ft",
        "--epochs", str(epochs), "--device", device, "--out", str(out),
        "--no-report", "--quiet",
    ]  # fmt: skip


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        direct = timed(
            [sys.executable, *cell_command(scratch_dir / "direct", args.device, args.epochs)]
        )
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        torchrun += ["--nproc-per-node", "1"]
        through = timed(torchrun + cell_command(scratch_dir / "torchrun", args.device, args.epochs))
    print(f"direct:              {direct:8.1f} s")
    print(f"torchrun, 1 process: {through:8.1f} s  ({through / direct:.2f}x direct)")


if __name__ == "__main__":
    main()
