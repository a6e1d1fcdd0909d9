"""Run a configuration end to end: fit every cell, select on ID val, then evaluate.

The two phases are kept apart on purpose. During *fit* only ID train and ID val are read
(features, training, per-epoch validation) and every selection is made. Only then does
*evaluate* touch ID test and the OOD sets, for every candidate, so the curves over
hyperparameters are complete while no choice can have looked at them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
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
from lpft.io import (
    atomic_write_json,
    atomic_write_text,
    ensure_free_space,
    remove_stale_temporaries,
    run_lock,
)
from lpft.methods import Method, Selected, method_for
from lpft.methods.base import Available, Candidate, LinearHead, Network, Predictor
from lpft.models import create_backbone
from lpft.run.context import OOD_VAL_PREFIX, RunContext
from lpft.run.results import assemble, cell_entry, oracle_entry, select, selected_entry
from lpft.run.rundir import CellRecord, RunDirectory, default_out_dir
from lpft.run.tracking import Tracker, open_tracker
from lpft.training.distributed import barrier, current_world
from lpft.training.features import forward_split
from lpft.training.logreg import predict_logits
from lpft.training.runtime import configure_determinism, resolve_device

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class PlannedMethod:
    key: str
    hidden: bool


def plan_methods(config: RunConfig) -> list[PlannedMethod]:
    """Requested methods in order, each preceded by any method it needs (hidden if unasked)."""
    planned: list[PlannedMethod] = []
    seen: set[str] = set()

    def add(key: str, hidden: bool) -> None:
        for requirement in method_for(key).requirements(config.method_options(key)):
            if requirement not in seen:
                add(requirement, requirement not in config.methods)
        if key not in seen:
            seen.add(key)
            planned.append(PlannedMethod(key, hidden))

    for key in config.methods:
        add(key, False)
    return planned


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
        self.plan = plan_methods(config)
        self.cells: dict[str, list[CellRecord]] = {}
        # Under torchrun every process runs the same program; only rank 0 writes files.
        self.main = current_world().main
        self._tracker: Tracker | None = None

    @property
    def tracker(self) -> Tracker:
        """The experiment trackers the config names, opened when first used."""
        if self._tracker is None:
            self._tracker = open_tracker(self.config.tracking, self.out, enabled=self.main)
        return self._tracker

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        fresh_directory = not self.out.exists()
        with run_lock(self.out) if self.main else nullcontext():
            device, benchmark, backbone = self.prepare(fresh_directory)
            with self._progress() as progress:
                ctx = self.context(device, benchmark, backbone, progress)
                self.on_phase("fit")
                self._fit_all(ctx, started)
                self.on_phase("evaluate")
                self._evaluate_all(ctx)
            results = self._write_results(ctx, complete=True, started=started)
            if self.config.report and self.main:
                write_report([self.out], self.out)
            self.tracker.finish(self.out)
        return results

    def prepare(self, fresh_directory: bool):
        """Check the input and the run directory, load the cells' records, save the config.

        On bad input a ``fresh_directory`` (created by this run) is removed again."""
        try:
            self.rundir.check_config(self.config)
            device, benchmark, backbone = self._build_inputs()
            self._load_cells()
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

    def _build_inputs(self):
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
        for planned in self.plan:
            method_for(planned.key).check(self.config.method_options(planned.key), backbone)
        return device, benchmark, backbone

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=self.quiet or not self.main,
        )

    def _seed_dependent(self, key: str) -> bool:
        return method_for(key).seed_dependent(self.config.method_options(key))

    def _seeds_for(self, key: str) -> list[int | None]:
        return list(range(self.config.seeds)) if self._seed_dependent(key) else [None]

    def _load_cells(self) -> None:
        for planned in self.plan:
            method = method_for(planned.key)
            options = self.config.method_options(planned.key)
            self.cells[planned.key] = [
                self.rundir.cell(planned.key, seed, hparams)
                for seed in self._seeds_for(planned.key)
                for hparams in method.cells(options)
            ]

    def _check_disk(self, backbone: torch.nn.Module) -> None:
        """Checkpoints: resume state (~3x weights) for one cell plus the best weights of each."""
        weights = sum(t.numel() * t.element_size() for t in backbone.state_dict().values())
        pending = sum(1 for cells in self.cells.values() for cell in cells if not cell.fitted)
        ensure_free_space(self.out, weights * (3 + pending), "checkpoints")

    def _cells_of(self, key: str, seed: int | None) -> list[CellRecord]:
        if not self._seed_dependent(key):
            seed = None
        return [c for c in self.cells[key] if c.seed == seed]

    def _selected(self, ctx: RunContext, key: str, seed: int) -> Selected:
        """``key``'s candidate selected on ID val for ``seed``, with its predictor, and every
        successful candidate of ``key`` for ``seed`` with a way to build its predictor."""
        cells = self._cells_of(key, seed)
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

    def _fit_all(self, ctx: RunContext, started: float) -> None:
        for planned in self.plan:
            method = method_for(planned.key)
            options = self.config.method_options(planned.key)
            for cell in self.cells[planned.key]:
                if cell.fitted:
                    continue
                ctx.current_label = (
                    f"{planned.key} seed {cell.seed if cell.seed is not None else '-'}"
                )
                self._fit_cell(ctx, method, options, cell)
                self._write_results(ctx, complete=False, started=started)

    def fit_cell(self, ctx: RunContext, key: str, cell: CellRecord) -> None:
        """Fit one cell (its required methods' cells for the seed must be fitted)."""
        self._fit_cell(ctx, method_for(key), self.config.method_options(key), cell)

    def _fit_cell(self, ctx: RunContext, method: Method, options, cell: CellRecord) -> None:
        if self.main:
            cell.directory.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(cell.directory)
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
                shutil.rmtree(cell.directory, ignore_errors=True)
                cell.directory.mkdir(parents=True, exist_ok=True)
        cell.seconds = time.perf_counter() - begun
        if self.main:
            self.rundir.save_fit(cell)
            method.fit_recorded(cell.directory)
        barrier()

    def _evaluate_all(self, ctx: RunContext) -> None:
        for planned in self.plan:
            for cell in self.cells[planned.key]:
                self.evaluate_cell(ctx, planned.key, cell)

    def evaluate_cell(self, ctx: RunContext, key: str, cell: CellRecord) -> None:
        """ID test / OOD metrics of every candidate of a fitted cell, then its release."""
        if cell.status != "done":
            return
        method = method_for(key)
        if cell.metrics is None:
            predictors = method.predictors(ctx, cell.directory, cell.candidates)
            cell.metrics = [self._evaluate(ctx, p) for p in predictors]
            if self.main:
                self.rundir.save_metrics(cell)
            self.tracker.cell_finished(key, cell)
        barrier()
        if not self.config.keep_checkpoints and self.main:
            method.release(cell.directory, cell.candidates)

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

    def _write_results(self, ctx: RunContext, complete: bool, started: float) -> dict[str, Any]:
        methods = {}
        for planned in self.plan:
            method = method_for(planned.key)
            options = self.config.method_options(planned.key)
            seeds = []
            for seed in range(self.config.seeds):
                cells = self._cells_of(planned.key, seed)
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
                "curve": method.curve_axis(options),
                "hidden": planned.hidden,
                "seed_dependent": self._seed_dependent(planned.key),
                "describe": method.describe(options),
                "seeds": seeds,
            }
        results = assemble(
            config=self.config.to_plain(),
            benchmark=ctx.benchmark,
            device=str(ctx.device),
            methods=methods,
            complete=complete,
            seconds=time.perf_counter() - started,
            compute_seconds=sum(c.seconds for cells in self.cells.values() for c in cells),
        )
        if not self.main:
            return results
        atomic_write_json(self.rundir.results_path, results)
        if complete:
            atomic_write_text(self.rundir.summary_path, markdown_summary(results))
        return results


def run(config: RunConfig, **kwargs: Any) -> dict[str, Any]:
    """Run ``config`` and return the results dict (also written to the run directory)."""
    return Runner(config, **kwargs).run()
