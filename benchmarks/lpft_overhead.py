"""LP-FT's cost over FT: wall time of LP + LP-FT against FT alone, same epochs, same benchmark.

Runs the embedded benchmark (digits-shift, builtin:glyph-resnet) twice with one seed and one
learning rate per method: ``lp,lpft`` (LP-FT needs the LP solution, so LP's feature extraction
and path are included) and ``ft``. Each starts with an empty feature cache; the dataset is
generated once beforehand and not timed. Both evaluate on test and OOD splits as a run does.
Each is timed ``--repeats`` times, alternating, and the best of each is compared (the machine's
noise is larger than the difference). Prints both wall times and the ratio (target <= 1.10).

    python benchmarks/lpft_overhead.py              # 10 epochs
    python benchmarks/lpft_overhead.py --epochs 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from lpft.config import resolve_config
from lpft.data.cache import lpft_home
from lpft.run.runner import Runner


def timed_run(methods: dict, out: Path, epochs: int) -> float:
    shutil.rmtree(lpft_home() / "features", ignore_errors=True)
    overrides = {
        "methods": methods,
        "seeds": 1,
        "out": str(out),
        "report": False,
        "device": "cpu",
    }
    for name, options in methods.items():
        if name != "lp":
            options["epochs"] = epochs
    started = time.perf_counter()
    Runner(resolve_config(overrides=overrides), quiet=True).run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ft-lr", type=float, default=1e-2)
    parser.add_argument("--lpft-lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["LPFT_HOME"] = str(Path(scratch) / "home")
        timed_run({"lp": {"C": [1.0]}}, Path(scratch) / "warmup", 1)
        lpft, ft = [], []
        for repeat in range(args.repeats):
            lpft.append(
                timed_run(
                    {"lp": {}, "lpft": {"lrs": [args.lpft_lr]}},
                    Path(scratch) / f"lpft-{repeat}",
                    args.epochs,
                )
            )
            ft.append(
                timed_run(
                    {"ft": {"lrs": [args.ft_lr]}}, Path(scratch) / f"ft-{repeat}", args.epochs
                )
            )
    print(
        f"digits-shift, builtin:glyph-resnet, 1 seed, {args.epochs} epochs, one lr each; "
        f"best of {args.repeats} alternating runs"
    )
    print(f"  lp + lpft: {min(lpft):8.2f} s  (all: {', '.join(f'{t:.2f}' for t in lpft)})")
    print(f"  ft:        {min(ft):8.2f} s  (all: {', '.join(f'{t:.2f}' for t in ft)})")
    print(f"  ratio (LP-FT incl. LP) / FT: {min(lpft) / min(ft):.3f}")


if __name__ == "__main__":
    main()
