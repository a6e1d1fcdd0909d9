"""The run's plan: edges from ``requirements(options)``, waves, and when checkpoints may go."""

from __future__ import annotations

from pathlib import Path

import pytest

from lpft.config import resolve_config
from lpft.errors import ConfigError
from lpft.run.plan import RunPlan


def plan(tmp_path: Path, methods: dict) -> RunPlan:
    overrides = {
        "benchmark": "tiny",
        "model": "builtin:tiny-test",
        "seeds": 1,
        "out": str(tmp_path / "run"),
        "methods": methods,
    }
    return RunPlan(resolve_config(overrides=overrides))


def test_cells_that_need_others_come_in_later_waves(tmp_path: Path) -> None:
    methods = {"ft": {"lrs": [0.1, 0.01]}, "soup": {}, "freeze-embed": {"head_init": "lp"}}
    waves = plan(tmp_path, methods).waves()
    assert waves[0] == ["ft/seed0/lr=0.1", "ft/seed0/lr=0.01", "lp/shared/sweep"]
    assert sorted(waves[1]) == ["freeze-embed/seed0/lr=0.01", "soup/seed0/sweep"]


def test_checkpoints_are_released_only_when_no_pending_cell_needs_them(tmp_path: Path) -> None:
    methods = {"ft": {"lrs": [0.1, 0.01]}, "soup": {}, "lpft": {}}
    run = plan(tmp_path, {**methods, "freeze-embed": {"head_init": "lp"}})
    lp, ft, soup = "lp/shared/sweep", "ft/seed0/lr=0.1", "soup/seed0/sweep"
    dependents = ["freeze-embed/seed0/lr=0.01", "lpft/seed0/lr=0.001"]
    assert sorted(run.dependents(lp)) == dependents
    assert run.dependents(ft) == [soup]
    assert run.ready([soup], {ft}) == []
    assert run.ready([soup], {ft, "ft/seed0/lr=0.01"}) == [soup]
    assert not run.releasable(lp, {lp, dependents[0]})
    assert run.releasable(lp, {lp, *dependents})
    assert not run.releasable(ft, {ft}) and run.releasable(ft, {ft, soup})


def test_an_unknown_cell_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no cell 'ft/seed9/lr=1\.0'"):
        plan(tmp_path, {"ft": {}}).cell("ft/seed9/lr=1.0")
