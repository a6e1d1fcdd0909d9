"""Cell claims under fire: concurrent local launches on one run directory, killed at random.

Each round starts ``--launches`` concurrent ``lpft run --launcher local`` processes on a fresh
run directory holding a quick sweep of ``1 + --lrs x --seeds`` cells (one shared LP cell, FT
over a learning-rate grid and seeds; 40 by default) on a small digits-shift. From the first
claim on, for ``--kill-for`` seconds, it SIGKILLs a random launch every ``--kill-every`` seconds
on average (one holding a cell's claim when there is one) and starts a replacement; then it lets
the launches finish and, if cells are left (every launch may have been killed), runs one more.
It reads every cell's ``attempts.jsonl`` and prints, over all rounds, the cells fitted exactly
once (at most one ``fitted`` attempt, and finished), duplicated (more than one: two processes
trained the same cell) and lost (not finished when the last launch ended), and the kills made.

    python benchmarks/claims_soak.py                              # 6 launches, 20 rounds
    python benchmarks/claims_soak.py --rounds 2 --launches 3 --lrs 3 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from lpft.run.cell import read_attempts

SMALL_DIGITS = {"train_per_class": 8, "val_per_class": 8, "test_per_class": 8,
                "heldout_per_class": 8}  # fmt: skip


@dataclass
class Tally:
    once: int = 0
    duplicated: int = 0
    lost: int = 0
    fitted_unrecorded: int = 0  # finished, its fitter killed between fit.json and its record
    kills: int = 0
    takeovers: int = 0


def sweep_config(out: Path, lrs: int, seeds: int, lease: float) -> dict:
    grid = [round(1e-3 * 1.3**i, 6) for i in range(lrs)]
    return {
        "benchmark": "digits-shift",
        "benchmark_options": SMALL_DIGITS,
        "seeds": seeds,
        "out": str(out),
        "report": False,
        "device": "cpu",
        "methods": {"lp": {"C": [0.1, 1.0]}, "ft": {"lrs": grid, "epochs": 1}},
        "launcher": {"name": "local", "lease_seconds": lease},
    }


def start_launch(config: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "lpft", "run", "--config", str(config), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def claim_holders(run: Path) -> set[int]:
    """Process ids named by the cells' current claims."""
    holders = set()
    for claim in run.glob("cells/*/*/*/claim.json"):
        try:
            holders.add(json.loads(claim.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return holders


def run_round(
    config: Path, run: Path, args: argparse.Namespace, rng: random.Random, tally: Tally
) -> None:
    launches = [start_launch(config) for _ in range(args.launches)]
    while not claim_holders(run) and any(p.poll() is None for p in launches):
        time.sleep(0.05)
    stop_killing = time.monotonic() + args.kill_for
    while time.monotonic() < stop_killing:
        time.sleep(rng.expovariate(1 / args.kill_every))
        alive = [p for p in launches if p.poll() is None]
        if not alive:
            break
        holding = [p for p in alive if p.pid in claim_holders(run)]
        victim = rng.choice(holding or alive)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        tally.kills += 1
        launches.append(start_launch(config))
    for process in launches:
        process.wait()
    subprocess.run([sys.executable, "-m", "lpft", "run", "--config", str(config), "--quiet"],
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)  # fmt: skip


def count(run: Path, tally: Tally) -> None:
    for cell in sorted(run.glob("cells/*/*/*")):
        outcomes = [attempt["outcome"] for attempt in read_attempts(cell)]
        fitted = outcomes.count("fitted")
        tally.takeovers += outcomes.count("lost-claim")
        if not (cell / "metrics.json").is_file():
            tally.lost += 1
        elif fitted > 1:
            tally.duplicated += 1
        elif fitted == 1:
            tally.once += 1
        else:
            tally.fitted_unrecorded += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--lrs", type=int, default=13, help="FT grid size")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--kill-for", type=float, default=40.0, help="seconds of kills a round")
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between")
    parser.add_argument("--lease", type=float, default=5.0, help="launcher.lease_seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tally = Tally()
    cells = 1 + args.lrs * args.seeds
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        os.environ.setdefault("LPFT_HOME", str(Path(directory) / "home"))
        for index in range(args.rounds):
            run = Path(directory) / f"round{index}"
            config = Path(directory) / f"round{index}.yaml"
            config.write_text(yaml.safe_dump(sweep_config(run, args.lrs, args.seeds, args.lease)))
            run_round(config, run, args, rng, tally)
            count(run, tally)
            print(f"round {index + 1}/{args.rounds}: {tally}", file=sys.stderr)
    total = args.rounds * cells
    print(
        f"{args.rounds} rounds x {cells} cells, {args.launches} concurrent launches, "
        f"{tally.kills} SIGKILLs ({time.perf_counter() - started:.0f} s)"
    )
    print(f"fitted exactly once: {tally.once + tally.fitted_unrecorded}/{total}")
    print(f"  of which finished by a job killed before recording its attempt: "
          f"{tally.fitted_unrecorded}")  # fmt: skip
    print(f"duplicated: {tally.duplicated}")
    print(f"lost: {tally.lost}")
    print(f"claims taken over from killed jobs: {tally.takeovers}")


if __name__ == "__main__":
    main()
