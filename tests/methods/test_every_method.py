"""Every registered method, built-in or plugin, runs end to end on the tiny benchmark.

Parametrised over the registry (as DomainBed does for its algorithms): a method is covered the
moment it registers. Each runs with its ``--quick`` profile, one seed, after whatever it requires.
"""

from __future__ import annotations

import math

import pytest

from lpft.config import resolve_config
from lpft.methods import METHODS, method_for
from lpft.run.runner import Runner


@pytest.mark.parametrize("name", METHODS.names())
def test_method_runs_and_reports_every_split(name: str, tiny_overrides: dict) -> None:
    tiny_overrides.update(seeds=1, methods=[name])
    config = resolve_config(quick=True, overrides=tiny_overrides)
    results = Runner(config, quiet=True).run()

    entry = results["methods"][name]
    method = method_for(name)
    assert entry["axes"] == list(method.sweep_axes(config.method_options(name)))
    selected = entry["seeds"][0]["selected"]
    assert selected is not None, f"{name}: no candidate selected"
    assert set(selected["hparams"]) == set(entry["axes"])
    assert 0.0 <= selected["id_val"] <= 1.0
    assert 0.0 <= selected["id_test"] <= 1.0
    assert set(selected["ood"]) == {"shifted"}
    assert not math.isnan(entry["summary"]["ood"]["shifted"]["mean"])
    for required in method.requirements(config.method_options(name)):
        assert results["methods"][required]["hidden"], f"{required} ran only as a requirement"
