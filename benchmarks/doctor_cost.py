"""What ``lpft doctor`` costs next to the default ``lpft run`` it advises on.

Times both commands as fresh processes (start-up included), each with an empty feature and data
cache of its own, on the same benchmark and backbone, one after the other, and prints both wall
times and their ratio as the last line (``doctor/run <ratio>``). The ratio is the figure to read
on a shared machine, where load moves both times.

    python benchmarks/doctor_cost.py
    python benchmarks/doctor_cost.py --model builtin:glyph-resnet-letters
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], home: Path) -> float:
    """Wall seconds of ``command`` with ``LPFT_HOME`` at ``home``; its output is discarded."""
    environment = {**os.environ, "LPFT_HOME": str(home)}
    started = time.perf_counter()
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:glyph-resnet")
    args = parser.parse_args()
    lpft = [sys.executable, "-m", "lpft"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        run_flags = ["--quiet", "--out", str(root / "run")]
        run = timed([*lpft, "run", "--model", args.model, *run_flags], root / "run-home")
        doctor = timed([*lpft, "doctor", "--model", args.model, "--quiet", "--json"], root / "home")
    print(f"lpft run (default): {run:.1f} s")
    print(f"lpft doctor: {doctor:.1f} s")
    print(f"doctor/run {doctor / run:.3f}")


if __name__ == "__main__":
    main()
