"""What each method adds to a run: fit and evaluation seconds per method, relative to ``ft``.

Runs one configuration (by default the embedded benchmark with one seed, its default grids) in
one process and times each method's fit phase (the sum of its cells) and evaluation phase
(every candidate on ID test and the OOD sets, distortion included). Prints seconds and the
ratio of each method's total to ``ft``'s total measured in the same run, so a shared or busy
machine affects numerator and denominator alike. Methods that require another (wise-ft
requires lp and its base ft@theta0, soup requires ft) are timed without their requirement's
cost.

    python benchmarks/method_costs.py
    python benchmarks/method_costs.py --methods lp,ft,lpft,wise-ft,soup,freeze-embed --seeds 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict

from lpft.config import resolve_config
from lpft.run.runner import Runner


class TimedRunner(Runner):
    """A runner that also records each method's evaluation time."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.evaluation_seconds: dict[str, float] = defaultdict(float)

    def _evaluate_all(self, ctx) -> None:
        plan = self.plan
        for planned in plan:
            self.plan = [planned]
            started = time.perf_counter()
            super()._evaluate_all(ctx)
            self.evaluation_seconds[planned.key] += time.perf_counter() - started
        self.plan = plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="lp,ft,wise-ft,soup,freeze-embed")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--benchmark", default="digits-shift")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        config = resolve_config(
            overrides={
                "benchmark": args.benchmark,
                "methods": args.methods.split(","),
                "seeds": args.seeds,
                "out": out,
                "report": False,
                "device": "cpu",
            }
        )
        runner = TimedRunner(config, quiet=True)
        started = time.perf_counter()
        runner.run()
        wall = time.perf_counter() - started
    totals = {}
    print(f"{'method':<14}{'cells':>6}{'fit s':>9}{'eval s':>9}{'total s':>9}{'x ft':>7}")
    for key, cells in runner.cells.items():
        fit = sum(cell.seconds for cell in cells)
        totals[key] = fit + runner.evaluation_seconds[key]
    for key, cells in runner.cells.items():
        fit = sum(cell.seconds for cell in cells)
        ratio = totals[key] / totals["ft"] if "ft" in totals else float("nan")
        print(
            f"{key:<14}{len(cells):>6}{fit:>9.1f}{runner.evaluation_seconds[key]:>9.1f}"
            f"{totals[key]:>9.1f}{ratio:>7.2f}"
        )
    print(f"whole run: {wall:.1f} s wall")


if __name__ == "__main__":
    main()
