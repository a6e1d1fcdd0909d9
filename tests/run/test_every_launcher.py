"""Every registered method under every launcher gives the plain run's numbers, and two Ray
launches on one directory share its cells.

One run directory per launcher holds every method (LP-FT, soups and WiSE-FT over a two-point FT
grid, FreezeEmbed starting from LP, ...), so a method that needs another's checkpoints is run
after them and before they are released, whatever process runs which cell."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from lpft.config import resolve_config
from lpft.models import create_backbone
from lpft.registry import METHODS
from lpft.run.cell import read_attempts
from lpft.run.launchers import launch
from lpft.run.launchers.ray_tasks import RayLauncher
from lpft.run.runner import Runner
from tests_support import (
    all_candidate_metrics,
    concurrently,
    selected_metrics,
    tiny_plugin_env,
    tiny_run_config,
)

LAUNCHERS = {
    "local": {},
    # submitit's in-process executor: the whole matrix without a process per cell (the
    # process-per-cell path, cluster "local", is tested in test_launchers).
    "slurm": {"slurm": {"cluster": "debug", "gpus_per_job": 0, "cpus_per_job": 1}},
    "ray": {"ray": {"num_cpus": 1}},
}


def every_method() -> dict[str, dict]:
    """Each registered method with a seconds-long setting (one epoch)."""
    block = next(iter(create_backbone("builtin:tiny-test").blocks()))
    known = {
        "lp": {"C": [0.1, 1.0]},
        "ft": {"lrs": [0.01, 0.003]},
        "l2sp": {"alphas": [0.01]},
        "freeze-embed": {"head_init": "lp"},
        "surgical": {"block": block},
        "wise-ft": {"alphas": [0.0, 0.5, 1.0]},
    }
    methods = {}
    for name in METHODS.names():
        options = dict(known.get(name, {}))
        if "epochs" in METHODS.get(name).options_model.model_fields:
            options["epochs"] = 1
        methods[name] = options
    return methods


def config(out: Path, **launcher) -> dict:
    return tiny_run_config(out, every_method(), launcher={"lease_seconds": 10, **launcher})


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """Jobs in other processes (submitit, Ray workers) find the tiny benchmark; one thread
    each, as in this process (a CPU's float sums depend on the thread count); one Ray instance
    for the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.getbasetemp() / "lpft-home"
        patch.setenv("LPFT_HOME", str(home))
        site = tmp_path_factory.mktemp("site")
        patch.setenv("PYTHONPATH", tiny_plugin_env(site)["PYTHONPATH"])
        patch.setenv("OMP_NUM_THREADS", "1")
        yield tmp_path_factory
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_instance(environment):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def plain(environment) -> dict:
    out = environment.mktemp("plain") / "run"
    return Runner(resolve_config(overrides=config(out)), quiet=True).run()


@pytest.fixture(scope="module", params=list(LAUNCHERS))
def launched(request, environment) -> tuple[str, Path, dict]:
    name = request.param
    if name == "ray":
        request.getfixturevalue("ray_instance")
    out = environment.mktemp(name) / "run"
    results = launch(resolve_config(overrides=config(out, name=name, **LAUNCHERS[name])))
    return name, out, results


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_under_every_launcher_matches_the_plain_run(method, launched, plain) -> None:
    name, out, results = launched
    assert results["status"] == "complete", name
    assert selected_metrics(results)[method] == selected_metrics(plain)[method]
    assert all_candidate_metrics(results)[method] == all_candidate_metrics(plain)[method]
    for cell in out.glob(f"cells/{method}/*/*"):
        outcomes = [a["outcome"] for a in read_attempts(cell)]
        assert outcomes == ["fitted"], f"{name}: {cell}: {outcomes}"


def test_two_ray_launches_share_the_cells(
    ray_instance, tmp_path: Path, plain, monkeypatch
) -> None:
    """Two launches submit the same cells at the same moment: each cell fitted once, no live
    claim taken over (every Ray task claims as itself)."""
    overrides = config(tmp_path / "run", name="ray", ray={"num_cpus": 1})
    overrides["methods"] = {"lp": overrides["methods"]["lp"], "ft": overrides["methods"]["ft"]}
    together = threading.Barrier(2, timeout=120)
    submit = RayLauncher.run_wave

    def submit_together(self, run_dir, keys):
        if not hasattr(self, "met"):
            self.met = together.wait()
        return submit(self, run_dir, keys)

    monkeypatch.setattr(RayLauncher, "run_wave", submit_together)
    outcomes = concurrently(lambda: launch(resolve_config(overrides=overrides)), 2)
    assert len(outcomes) == 2
    for results in outcomes:
        assert results["status"] == "complete"
        assert selected_metrics(results) == {k: selected_metrics(plain)[k] for k in ("lp", "ft")}
    for cell in (tmp_path / "run").glob("cells/*/*/*"):
        assert [a["outcome"] for a in read_attempts(cell)] == ["fitted"], cell
