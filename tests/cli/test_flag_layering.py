"""Every combination of the layering flags lands each value where the documented order says:
paper < benchmark < --config < --quick < flags (--methods, --epochs, --lrs) < --set, and a run
resumed with its original flags gets exactly the saved configuration."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from lpft.cli.main import build_parser
from lpft.cli.run import config_from_args
from lpft.config import resolve_config
from lpft.errors import ConfigError
from lpft.io import atomic_write_yaml
from lpft.run.rundir import RunDirectory

FLAGS = ("config", "quick", "methods", "lrs", "epochs", "set", "resume")
YAML = {"seeds": 4, "methods": {"lp": {}, "ft": {"epochs": 7, "lrs": [0.5, 0.6, 0.7]}, "lpft": {}}}
BENCH = resolve_config()  # paper + digits-shift defaults, nothing else


def argv_for(flags: set[str], tmp_path: Path) -> list[str]:
    argv = ["run", "--out", str(tmp_path / "run")]
    if "config" in flags:
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(YAML, sort_keys=False))
        argv += ["--config", str(path)]
    if "quick" in flags:
        argv.append("--quick")
    if "methods" in flags:
        argv += ["--methods", "ft,lpft"]
    if "lrs" in flags:
        argv += ["--lrs", "ft=0.01,0.02"]
    if "epochs" in flags:
        argv += ["--epochs", "3"]
    if "set" in flags:
        argv += ["--set", "methods.ft.epochs=5", "--set", "seeds=6"]
    return argv


def expected(flags: set[str]) -> dict[str, Any]:
    """The documented order, computed by hand for the keys the flags compete for."""
    bench_ft, bench_lpft = BENCH.methods["ft"], BENCH.methods["lpft"]
    file_ft_lrs = YAML["methods"]["ft"]["lrs"] if "config" in flags else bench_ft.lrs
    ft_lrs, lpft_lrs = file_ft_lrs, bench_lpft.lrs
    seeds = 4 if "config" in flags else 3
    ft_epochs = 7 if "config" in flags else bench_ft.epochs
    lpft_epochs = bench_lpft.epochs
    lp_c = BENCH.methods["lp"].C
    if "quick" in flags:
        seeds, ft_epochs, lpft_epochs = 2, 2, 2
        ft_lrs, lpft_lrs = [ft_lrs[len(ft_lrs) // 2]], [lpft_lrs[len(lpft_lrs) // 2]]
        lp_c = lp_c[::3]
    if "epochs" in flags:
        ft_epochs = lpft_epochs = 3
    if "lrs" in flags:
        ft_lrs = [0.01, 0.02]
    if "set" in flags:
        ft_epochs, seeds = 5, 6
    if "methods" in flags:
        methods = ["ft", "lpft"]
    elif "config" in flags:
        methods = ["lp", "ft", "lpft"]
    else:
        methods = ["lp", "ft", "ft@bn-eval", "lpft"]
    return {
        "methods": methods,
        "seeds": seeds,
        "ft.epochs": ft_epochs,
        "ft.lrs": ft_lrs,
        "lpft.epochs": lpft_epochs,
        "lpft.lrs": lpft_lrs,
        "lp.C": lp_c if "lp" in methods else None,
    }


def observed(config) -> dict[str, Any]:
    return {
        "methods": list(config.methods),
        "seeds": config.seeds,
        "ft.epochs": config.methods["ft"].epochs,
        "ft.lrs": config.methods["ft"].lrs,
        "lpft.epochs": config.methods["lpft"].epochs,
        "lpft.lrs": config.methods["lpft"].lrs,
        "lp.C": config.methods["lp"].C if "lp" in config.methods else None,
    }


def parse(argv: list[str]):
    return config_from_args(build_parser().parse_args(argv))


COMBINATIONS = [
    set(chosen) for size in range(len(FLAGS) + 1) for chosen in itertools.combinations(FLAGS, size)
]


@pytest.mark.parametrize("flags", COMBINATIONS, ids=lambda f: "+".join(sorted(f)) or "none")
def test_each_value_lands_where_the_documented_order_says(flags: set[str], tmp_path: Path):
    original = argv_for(flags - {"resume"}, tmp_path)
    config = parse(original)
    assert observed(config) == expected(flags - {"resume"})
    assert config.quick == ("quick" in flags)
    if "resume" in flags:
        run_dir = RunDirectory(tmp_path / "run")
        atomic_write_yaml(run_dir.config_path, config.to_plain())
        resumed = parse(["run", *original[3:], "--resume", str(run_dir.root)])
        assert resumed.to_plain() == config.to_plain()
        run_dir.check_config(resumed)  # accepted: the same flags resume the same run
        bare = parse(["run", "--resume", str(run_dir.root)])
        assert bare.to_plain() == config.to_plain()


def test_quick_resume_does_not_thin_the_grids_twice(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    first = parse(["run", "--quick", "--out", str(run_dir.root)])
    atomic_write_yaml(run_dir.config_path, first.to_plain())
    again = parse(["run", "--quick", "--resume", str(run_dir.root)])
    assert again.methods["lp"].C == first.methods["lp"].C
    assert len(first.methods["lp"].C) == 19
    run_dir.check_config(again)


def test_resuming_a_full_run_with_quick_is_refused(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    atomic_write_yaml(run_dir.config_path, parse(["run", "--out", str(run_dir.root)]).to_plain())
    with pytest.raises(ConfigError, match="different config"):
        run_dir.check_config(parse(["run", "--quick", "--resume", str(run_dir.root)]))


def test_set_for_a_method_survives_the_methods_flag() -> None:
    config = parse(["run", "--quick", "--methods", "lp,ft", "--set", "methods.ft.epochs=1"])
    assert config.methods["ft"].epochs == 1


def test_bad_set_value_for_a_listed_method_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"methods\.lp\.solver='bogus'"):
        parse(["run", "--methods", "lp", "--set", "methods.lp.solver=bogus"])


def test_set_alone_does_not_change_the_method_list() -> None:
    config = parse(["run", "--set", "methods.ft.epochs=1"])
    assert list(config.methods) == ["lp", "ft", "ft@bn-eval", "lpft"]
    assert config.methods["ft"].epochs == 1


def test_set_for_a_method_that_does_not_run_is_refused() -> None:
    with pytest.raises(ConfigError, match="method 'lpft', which is not in this run"):
        parse(["run", "--methods", "lp,ft", "--set", "methods.lpft.epochs=1"])


def test_lrs_per_method_and_bare_list_for_ft_only() -> None:
    config = parse(["run", "--lrs", "ft=1e-3,3e-3", "--lrs", "lpft=1e-5,3e-5"])
    assert config.methods["ft"].lrs == [1e-3, 3e-3]
    assert config.methods["lpft"].lrs == [1e-5, 3e-5]
    bare = parse(["run", "--lrs", "1e-3,3e-3"])
    assert bare.methods["ft"].lrs == [1e-3, 3e-3]
    assert bare.methods["lpft"].lrs == BENCH.methods["lpft"].lrs
    assert bare.methods["ft@bn-eval"].lrs == BENCH.methods["ft@bn-eval"].lrs


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lrs", "lp=0.1"], "method 'lp' has no option 'lrs'"),
        (["--methods", "ft", "--lrs", "lpft=0.1"], "'lpft', which is not in this run"),
        (["--lrs", "ft=0.1", "--lrs", "ft=0.2"], "--lrs given twice for method 'ft'"),
    ],
)
def test_lrs_for_a_wrong_method_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(["run", *argv])
