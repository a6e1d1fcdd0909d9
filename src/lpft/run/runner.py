"""Run a configuration end to end: fit every cell, select on ID val, then evaluate.

The two phases are kept apart on purpose. During *fit* only ID train and ID val are read
(features, training, per-epoch validation) and every selection is made. Only then does
*evaluate* touch ID test and the OOD sets, for every candidate, so the curves over
hyperparameters are complete while no choice can have looked at them.

The plain run is one executor of the run's plan (``lpft.run.plan``): it works through the cells
in plan order, each inside its claim (``lpft.run.cell``) like a cell job, so a plain run and
cell jobs (or a second plain run) on one directory share the cells instead of redoing them. The
run lock is only held for moments: checking or saving the config and writing ``results.json``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lpft.analysis.distortion import distortion
from lpft.analysis.report import write_report
from lpft.analysis.tables import markdown_summary
from lpft.config import RunConfig
from lpft.data import BuildContext, EvalSplit, create_benchmark, lpft_home
from lpft.data.metrics import PRIMARY_METRIC
from lpft.errors import ConfigError, LpftError, TrainingDivergedError
from lpft.io import atomic_write_text, ensure_free_space
from lpft.methods import Selected, method_for
from lpft.methods.base import Available, Candidate, LinearHead, Network, Predictor
from lpft.models import create_backbone
from lpft.run.cell import CellAttempt, attempt_cell, clear_partial_outputs, release_artifacts
from lpft.run.claims import ClaimLost
from lpft.run.context import OOD_VAL_PREFIX, RunContext
from lpft.run.plan import PlannedMethod, RunPlan, plan_methods, seed_dependent
from lpft.run.results import (
    assemble,
    cell_entry,
    oracle_entry,
    publish_results,
    select,
    selected_entry,
)
from lpft.run.rundir import CellRecord, RunDirectory, default_out_dir, run_directory_lock
from lpft.run.tracking import Tracker, open_tracker
from lpft.training.distributed import barrier, current_world
from lpft.training.features import forward_split
from lpft.training.logreg import predict_logits
from lpft.training.runtime import configure_determinism, resolve_device

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# How often a run waiting for a cell that another process holds looks again.
CLAIM_POLL_SECONDS = 0.5

__all__ = ["PlannedMethod", "Runner", "plan_methods", "run"]


def outcome_of(cell: CellRecord) -> str:
    """An attempt's outcome once its cell is fitted: fitted, or diverged (a recorded result)."""
    return "fitted" if cell.status == "done" else "diverged"


class Runner:
    def __init__(
        self,
        config: RunConfig,
        console: Console | None = None,
        quiet: bool = False,
        on_phase: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.on_phase = on_phase or (lambda _phase: None)
        self.out = Path(config.out) if config.out else default_out_dir(config)
        self.rundir = RunDirectory(self.out)
        self.plan = RunPlan(config)
        self.records: dict[str, CellRecord] = {}
        # Under torchrun every process runs the same program; only rank 0 writes files.
        self.main = current_world().main
        self._tracker: Tracker | None = None

    @property
    def cells(self) -> dict[str, list[CellRecord]]:
        """Each planned method's cell records, in plan order."""
        by_method: dict[str, list[CellRecord]] = {p.key: [] for p in self.plan.methods}
        for planned in self.plan.cells:
            if planned.key in self.records:
                by_method[planned.method].append(self.records[planned.key])
        return by_method

    @property
    def tracker(self) -> Tracker:
        """The experiment trackers the config names, opened when first used."""
        if self._tracker is None:
            self._tracker = open_tracker(self.config.tracking, self.out, enabled=self.main)
        return self._tracker

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        fresh_directory = not self.out.exists()
        device, benchmark, backbone = self.prepare(fresh_directory)
        with self.progress() as progress:
            ctx = self.context(device, benchmark, backbone, progress)
            self.on_phase("fit")
            self._fit_all(ctx, started)
            self.on_phase("evaluate")
            self._evaluate_all(ctx)
        results = self.write_results(ctx, complete=True, started=started)
        if self.config.report and self.main:
            write_report([self.out], self.out)
        self.tracker.finish(self.out)
        return results

    def prepare(self, fresh_directory: bool):
        """Check the input and the run directory, load the cells' records, save the config.

        On bad input a ``fresh_directory`` (created by this run) is removed again."""
        with run_directory_lock(self.out) if self.main else nullcontext():
            try:
                self.rundir.check_config(self.config)
                device, benchmark, backbone = self.build_inputs()
                self.load_cells()
                self._check_disk(backbone)
            except LpftError:
                if fresh_directory and self.main:
                    shutil.rmtree(self.out, ignore_errors=True)
                raise
            if self.main:
                self.rundir.write_config(self.config)
        return device, benchmark, backbone

    def context(self, device, benchmark, backbone, progress: Progress) -> RunContext:
        return RunContext(
            config=self.config,
            benchmark=benchmark,
            pretrained=backbone.to(device),
            device=device,
            progress=progress,
            autocast_dtype=PRECISIONS[self.config.precision],
        )

    def build_inputs(self):
        """Everything that can be wrong with the user's input fails here, before any training."""
        configure_determinism(self.config.deterministic)
        device = resolve_device(self.config.device)
        benchmark = create_benchmark(
            self.config.benchmark,
            self.config.benchmark_options,
            BuildContext(self.config.data_root, lpft_home(), self.config.skip_bad_images),
        )
        if self.config.oracle and not benchmark.ood_val:
            raise ConfigError(
                f"--oracle: benchmark '{benchmark.name}' has no OOD validation split to select on"
            )
        backbone = create_backbone(self.config.model)
        for planned in self.plan.methods:
            method_for(planned.key).check(self.config.method_options(planned.key), backbone)
        return device, benchmark, backbone

    def progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=self.quiet or not self.main,
        )

    def load_cells(self) -> None:
        """Read every planned cell's records from the run directory."""
        for planned in self.plan.cells:
            self.reload(planned.key)

    def reload(self, key: str) -> CellRecord:
        """Read ``key``'s records again (another process may have written them)."""
        planned = self.plan.cell(key)
        self.records[key] = self.rundir.cell(planned.method, planned.seed, planned.hparams)
        return self.records[key]

    def _check_disk(self, backbone: torch.nn.Module) -> None:
        """Checkpoints: resume state (~3x weights) for one cell plus the best weights of each."""
        weights = sum(t.numel() * t.element_size() for t in backbone.state_dict().values())
        pending = sum(1 for cell in self.records.values() if not cell.fitted)
        ensure_free_space(self.out, weights * (3 + pending), "checkpoints")

    def cells_of(self, key: str, seed: int | None) -> list[CellRecord]:
        return [self.records[c.key] for c in self.plan.cells_of(key, seed)]

    def _selected(self, ctx: RunContext, key: str, seed: int) -> Selected:
        """``key``'s candidate selected on ID val for ``seed``, with its predictor, and every
        successful candidate of ``key`` for ``seed`` with a way to build its predictor."""
        cells = [self.reload(c.key) for c in self.plan.cells_of(key, seed)]
        choice = select(cells)
        if choice is None:
            raise TrainingDivergedError(f"no successful '{key}' cell for seed {seed} to start from")
        method = method_for(key)

        def loader(cell: CellRecord, candidate: Candidate) -> Callable[[], Predictor]:
            return lambda: next(method.predictors(ctx, cell.directory, [candidate]))

        available = [
            Available(candidate, loader(cell, candidate))
            for cell in cells
            if cell.status == "done"
            for candidate in cell.candidates
        ]
        cell, index = choice
        candidate = cell.candidates[index]
        return Selected(candidate, loader(cell, candidate)(), available)

    @contextmanager
    def _holding(self, key: str) -> Iterator[CellAttempt | None]:
        """Hold ``key``'s claim (waiting while another process has it); under torchrun rank 0
        holds it for every rank. Yields the attempt on rank 0, None on the other ranks."""
        if not self.main:
            barrier()
            yield None
            return
        directory = self.rundir.root / "cells" / key
        while True:
            with attempt_cell(directory, self.config.launcher.lease_seconds, wait=True) as held:
                if held is not None:
                    barrier()
                    yield held
                    return
            time.sleep(CLAIM_POLL_SECONDS)

    def _work_on(
        self,
        key: str,
        needed: Callable[[CellRecord], bool],
        work: Callable[[CellRecord, CellAttempt | None], None],
    ) -> bool:
        """Do ``work`` on ``key`` inside its claim unless (read again once the claim is held)
        it is not ``needed`` any more; True when this process did it. A claim lost meanwhile
        means another process has the cell: wait for it and look again."""
        while needed(self.records[key]):
            try:
                with self._holding(key) as attempt:
                    cell = self.reload(key)
                    if not needed(cell):
                        return False
                    with attempt.running() if attempt else nullcontext():
                        work(cell, attempt)
                    return True
            except ClaimLost:
                self.console.print(f"[yellow]{key}: taken over by another process; waiting")
                self.reload(key)
        return False

    def _fit_all(self, ctx: RunContext, started: float) -> None:
        def fit(cell: CellRecord, attempt: CellAttempt | None) -> None:
            seed = cell.seed if cell.seed is not None else "-"
            ctx.current_label = f"{cell.method} seed {seed}"
            self.fit_cell(ctx, cell.method, cell)
            if attempt:
                attempt.finish(outcome_of(cell))

        for planned in self.plan.cells:
            if self._work_on(planned.key, lambda cell: not cell.fitted, fit):
                self.write_results(ctx, complete=False, started=started)

    def fit_cell(self, ctx: RunContext, key: str, cell: CellRecord) -> None:
        """Fit one cell (its required methods' cells for the seed must be fitted)."""
        method = method_for(key)
        options = self.config.method_options(key)
        if self.main:
            cell.directory.mkdir(parents=True, exist_ok=True)
        seed = cell.seed if cell.seed is not None else 0
        begun = time.perf_counter()
        try:
            required = {key: self._selected(ctx, key, seed) for key in method.requirements(options)}
            cell.candidates = method.fit(ctx, options, cell.hparams, seed, cell.directory, required)
            cell.status = "done"
        except TrainingDivergedError as exc:
            cell.status, cell.error, cell.candidates = "failed", str(exc), []
            if self.main:
                self.console.print(
                    f"[yellow]cell {cell.method} {cell.directory.name} failed: {exc}"
                )
                clear_partial_outputs(cell.directory)
        cell.seconds = time.perf_counter() - begun
        if self.main:
            self.rundir.save_fit(cell)
            method.fit_recorded(cell.directory)
        barrier()

    def _evaluate_all(self, ctx: RunContext) -> None:
        for planned in self.plan.cells:
            self._work_on(
                planned.key,
                lambda cell: cell.status == "done" and cell.metrics is None,
                lambda cell, _attempt: self.evaluate_cell(ctx, cell.method, cell),
            )
        if self.main and not self.config.keep_checkpoints:
            release_artifacts(self.plan, self.rundir, [c.key for c in self.plan.cells])
        barrier()

    def evaluate_cell(self, ctx: RunContext, key: str, cell: CellRecord) -> None:
        """ID test / OOD metrics of every candidate of a fitted cell (once)."""
        if cell.status != "done" or cell.metrics is not None:
            return
        method = method_for(key)
        predictors = method.predictors(ctx, cell.directory, cell.candidates)
        cell.metrics = [self._evaluate(ctx, p) for p in predictors]
        if self.main:
            self.rundir.save_metrics(cell)
        self.tracker.cell_finished(key, cell)
        barrier()

    def _evaluate(self, ctx: RunContext, predictor: Predictor) -> dict[str, Any]:
        if isinstance(predictor, LinearHead):
            return self._evaluate_head(ctx, predictor)
        if isinstance(predictor, Network):
            return self._evaluate_network(ctx, predictor)
        raise TypeError(f"unknown predictor {type(predictor).__name__}")

    def _oracle_splits(self, ctx: RunContext) -> dict[str, EvalSplit]:
        """OOD validation sets by their context name, only for ``--oracle``."""
        if not self.config.oracle:
            return {}
        return {OOD_VAL_PREFIX + name: split for name, split in ctx.benchmark.ood_val.items()}

    def _evaluate_head(self, ctx: RunContext, head: LinearHead) -> dict[str, Any]:
        """Accuracy of a linear head on the pretrained features (already cached)."""
        metrics: dict[str, Any] = {"ood": {}}
        splits = {**ctx.benchmark.eval_splits(), **self._oracle_splits(ctx)}
        for name, split in splits.items():
            pre = ctx.features.get(name)
            logits = predict_logits(pre.features, head.weight, head.bias)
            self._store_scores(metrics, name, split.score(logits, pre.labels))
        return metrics

    def _evaluate_network(self, ctx: RunContext, network: Network) -> dict[str, Any]:
        """Accuracy of a whole network, and how far its features moved from the pretrained."""
        model = network.model.to(ctx.device)
        metrics: dict[str, Any] = {"ood": {}, "distortion": {}}
        for name, split in ctx.benchmark.eval_splits().items():
            pre = ctx.features.get(name, with_blocks=True)
            post = forward_split(
                model.backbone,
                ctx.eval_loader(name),
                ctx.device,
                head=model.head,
                with_blocks=True,
                autocast_dtype=ctx.autocast_dtype,
            )
            self._store_scores(metrics, name, split.score(post.logits, post.labels))
            metrics["distortion"][name] = distortion(pre, post)
        for name, split in self._oracle_splits(ctx).items():
            post = forward_split(
                model.backbone,
                ctx.eval_loader(name),
                ctx.device,
                head=model.head,
                autocast_dtype=ctx.autocast_dtype,
            )
            self._store_scores(metrics, name, split.score(post.logits, post.labels))
        return metrics

    @staticmethod
    def _store_scores(metrics: dict[str, Any], split: str, scores: dict[str, float]) -> None:
        """Every metric under ``scores``, the accuracy also where tables have always read it; an
        OOD validation set (read only for ``--oracle`` rows) keeps its accuracy alone."""
        accuracy = scores[PRIMARY_METRIC]
        if split.startswith(OOD_VAL_PREFIX):
            metrics.setdefault("ood_val", {})[split.removeprefix(OOD_VAL_PREFIX)] = accuracy
            return
        metrics.setdefault("scores", {})[split] = scores
        if split == "id_test":
            metrics["id_test"] = accuracy
        else:
            metrics["ood"][split] = accuracy

    def write_results(self, ctx: RunContext, complete: bool, started: float) -> dict[str, Any]:
        """``results.json`` (and, complete, ``summary.md``) from every cell's records as they are
        on disk now, under the run lock; a more complete ``results.json`` already there stays."""
        with run_directory_lock(self.out) if self.main else nullcontext():
            if self.main:
                self.load_cells()
            results = self.results(ctx, complete, started)
            if self.main and publish_results(self.rundir.results_path, results) and complete:
                atomic_write_text(self.rundir.summary_path, markdown_summary(results))
        return results

    def results(self, ctx: RunContext, complete: bool, started: float) -> dict[str, Any]:
        methods = {}
        for planned in self.plan.methods:
            method = method_for(planned.key)
            options = self.config.method_options(planned.key)
            seeds = []
            for seed in range(self.config.seeds):
                cells = self.cells_of(planned.key, seed)
                seeds.append(
                    {
                        "seed": seed,
                        "selected": selected_entry(cells),
                        "cells": [cell_entry(c) for c in cells if c.fitted],
                    }
                )
                if self.config.oracle:
                    seeds[-1]["oracle_selected"] = oracle_entry(cells)
            methods[planned.key] = {
                "method": method.name,
                "axes": list(method.sweep_axes(options)),
                "axis_bounds": {a: list(b) for a, b in method.axis_bounds(options).items()},
                "curve": method.curve_axis(options),
                "hidden": planned.hidden,
                "seed_dependent": seed_dependent(self.config, planned.key),
                "describe": method.describe(options),
                "seeds": seeds,
            }
        return assemble(
            config=self.config.to_plain(),
            benchmark=ctx.benchmark,
            device=str(ctx.device),
            methods=methods,
            complete=complete,
            seconds=time.perf_counter() - started,
            compute_seconds=sum(c.seconds for c in self.records.values()),
        )


def run(config: RunConfig, **kwargs: Any) -> dict[str, Any]:
    """Run ``config`` and return the results dict (also written to the run directory)."""
    return Runner(config, **kwargs).run()
