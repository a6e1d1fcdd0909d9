"""``lpft doctor``'s calls against realised outcomes, where the truth is known.

Digits-shift cases: each argument is the directory of a full ``lpft run`` with at least
``--methods lp,ft,lpft,wise-ft``; the doctor is run on the same benchmark options and backbone
(its probes read ID train / val and the OOD images, never a label of theirs). The winners are
the methods whose realised OOD average is not resolved below the best method's (the per-seed
paired difference's 90% t-interval does not exclude 0). Two scores per call: *regime*, whether
it says FT exactly when FT is the only winner and not when FT is not a winner (the issue's
"glyph-resnet: not ft, glyph-resnet-letters: ft"; a tie of FT with another method accepts
either call), and *exact*, whether the method it names is among the winners.
Theory cases: the two-layer linear simulator (``lpft theory``) with the doctor's rule on its
measurements; the winners are the methods within 5% of the smallest worst-case OOD loss.

    python benchmarks/doctor_calls.py runs/glyph-resnet runs/glyph-resnet-letters ...
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import mean

from rich.progress import Progress

from lpft.analysis.stats import mean_ci
from lpft.config import resolve_config
from lpft.doctor.diagnose import diagnose
from lpft.doctor.theory import theory_case
from lpft.io import read_json
from lpft.theory import SettingConfig

METHODS = ("lp", "lpft", "wise-ft", "ft")
THEORY_CASES = (
    {},
    {"head_init": "zero"},
    {"eps": 0.5, "n": 40},
    {"eps": 0.9, "n": 40, "head_init": "zero"},
    {"eps": 0.9, "n": 10, "head_init": "zero", "id_dim": 8},
    {"eps": 0.5, "n": 40, "head_init": "zero", "id_dim": 8},
)


def ood_averages(results: dict) -> dict[str, list[float]]:
    """Each method's selected OOD average, seed by seed."""
    return {
        key: [mean(seed["selected"]["ood"].values()) for seed in results["methods"][key]["seeds"]]
        for key in METHODS
    }


def winners(per_seed: dict[str, list[float]]) -> list[str]:
    """Methods not resolved below the best mean by the paired per-seed t-interval."""
    best = max(per_seed, key=lambda m: mean(per_seed[m]))
    kept = []
    for method, values in per_seed.items():
        gap = mean_ci([b - v for b, v in zip(per_seed[best], values, strict=True)])
        if method == best or gap["mean"] - gap["half_width"] <= 0:
            kept.append(method)
    return kept


def scores(call: str, won: list[str]) -> str:
    """Regime: FT called exactly when FT wins alone (a tie of FT with another accepts both)."""
    regime = (call == "ft") == ("ft" in won) or ("ft" in won and len(won) > 1)
    return f"{'hit' if regime else 'MISS'} | {'hit' if call in won else 'miss'}"


def digits_row(run_dir: Path) -> str:
    results = read_json(run_dir / "results.json")
    saved = results["config"]
    config = resolve_config(
        overrides={
            "benchmark": saved["benchmark"],
            "benchmark_options": saved["benchmark_options"],
            "model": saved["model"],
            "device": "cpu",
        }
    )
    with Progress(disable=True) as progress:
        document = diagnose(config, progress)
    per_seed = ood_averages(results)
    won = winners(per_seed)
    call = document["recommendation"]
    asymmetry = document["indicators"][0]["value"]
    realised = " / ".join(f"{100 * mean(per_seed[m]):.1f}" for m in METHODS)
    options = ", ".join(f"{k}={v}" for k, v in saved["benchmark_options"].items()) or "default"
    ratio = document["doctor_seconds"] / results["wall_seconds"]
    return (
        f"| digits-shift ({options}), `{saved['model']}` | {call} ({document['confidence']:.0%}) "
        f"| {asymmetry:.2f} | {realised} | {', '.join(won)} | {scores(call, won)} | {ratio:.2f} |"
    )


def theory_row(settings: dict) -> str:
    case = theory_case(SettingConfig(**settings))
    call = case.recommendation.method
    asymmetry = case.recommendation.indicators[0].value
    losses = " / ".join(f"{case.ood_loss[m]:.3g}" for m in ("lp", "lpft", "ft"))
    name = ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"
    return (
        f"| theory ({name}) | {call} ({case.recommendation.confidence:.0%}) | {asymmetry:.2f} "
        f"| OOD loss lp / lpft / ft {losses} | {', '.join(case.winners)} "
        f"| {scores(call, case.winners)} | |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="*", type=Path)
    args = parser.parse_args()
    print(
        "| case | doctor's call (confidence) | asymmetry | realised OOD avg % lp / lpft / "
        "wise-ft / ft | winners | regime | exact | doctor / run time |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run_dir in args.run_dirs:
        print(digits_row(run_dir), flush=True)
    for settings in THEORY_CASES:
        print(theory_row(settings), flush=True)


if __name__ == "__main__":
    main()
