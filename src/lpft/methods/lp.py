"""``lp``: linear probing on frozen features, over the regularisation path.

With ``stream`` the path is solved from ID train's on-disk feature-cache entry, reading blocks of
rows (``LogisticRegressionPath.streamed``, Newton-CG), so the training features are never held
in memory: ``auto`` (default) does so when the in-memory solve (``in_memory_bytes``: about four
float64 copies of the n x d features and four n x k arrays at its peak) would exceed
``IN_MEMORY_SHARE`` of memory (``physical_memory_bytes``) and the run has a disk cache;
``always`` and ``never`` force the choice. An in-memory solve runs on the run's accelerator when
it fits there by the same rule (``device_memory_bytes``), else on the host; ``solver: newton``
is refused when its dense Hessian would not fit. Augmented train features (``train_features:
augmented``) live in memory only, so streaming applies to the eval-transform features; ID
validation features are read into memory either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, PositiveFloat, ValidationInfo, field_validator

from lpft.errors import CheckpointError, ConfigError
from lpft.io import atomic_torch_save
from lpft.methods.base import Candidate, LinearHead, Method, MethodContext, Selected
from lpft.registry import METHODS
from lpft.training.distributed import is_main_process
from lpft.training.evaluate import accuracy
from lpft.training.feature_cache import CachedFeatures
from lpft.training.features import ForwardOutputs
from lpft.training.logreg import LogisticRegressionPath, predict_logits
from lpft.training.official_lp import OFFICIAL_MAX_ITER, official_lp_path
from lpft.validation import StrictModel, distinct

HEADS = "heads.pt"
# The in-memory exact solve's peak in float64 arrays: about four of n x d (the features, their
# standardised, centred and rotated copies) and four of n x k (logits, probabilities, one-hot
# labels, a line-search trial's).
FEATURE_COPIES = 4
CLASS_COPIES = 4
# An in-memory solve is planned to take at most this share of the memory it runs in (the host's:
# physical or the control group's limit, FALLBACK_MEMORY_BYTES where the system does not say; or
# an accelerator's); ``stream: auto`` streams beyond it.
IN_MEMORY_SHARE = 1 / 2
FALLBACK_MEMORY_BYTES = 16 * 2**30
# Memory limits of the process's control group (v2, v1), which bound it below the machine's.
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
# Rows per block when streaming: blocks of about this many bytes as float64.
STREAM_CHUNK_BYTES = 64 * 2**20
STREAMING_SOLVERS = ("auto", "newton-cg")


def default_c_grid() -> list[float]:
    """Inverse regularisation strengths: the paper's range [1e-7, 1e2], 6 values per decade."""
    return [float(c) for c in np.logspace(-7, 2, 55)]


class LinearProbeOptions(StrictModel):
    """L2-regularised multinomial logistic regression on frozen features."""

    C: list[PositiveFloat] = Field(default_factory=default_c_grid, min_length=1)
    standardize: Literal["scalar", "none"] = "scalar"
    # "official": the official code's recipe through scikit-learn (warm-started L-BFGS capped
    # at 20 iterations per C, scalar standardisation); the others solve each C to convergence.
    solver: Literal["auto", "newton", "newton-cg", "lbfgs", "official"] = "auto"
    # "augmented": fit per seed on one pass of ID train through the training transform
    # (augmentation seeded by the seed), as the official code does; "eval": one fit on the
    # un-augmented features serves every seed.
    train_features: Literal["eval", "augmented"] = "eval"
    tol: float = Field(1e-7, gt=0, le=1e-2)
    max_iter: int = Field(1000, ge=1)
    # Solve from the on-disk features block by block (see the module docstring).
    stream: Literal["auto", "always", "never"] = "auto"

    @field_validator("C")
    @classmethod
    def _sorted_unique(cls, grid: list[float]) -> list[float]:
        return sorted(distinct(grid))

    @field_validator("stream")
    @classmethod
    def _streamable(cls, stream: str, info: ValidationInfo) -> str:
        if stream != "always":
            return stream
        solver = info.data.get("solver", "auto")
        if solver not in STREAMING_SOLVERS:
            raise ValueError(
                f"streaming solves with newton-cg; solver '{solver}' needs the features in memory"
            )
        if info.data.get("train_features") == "augmented":
            raise ValueError(
                "augmented train features are kept in memory only; streaming needs "
                "train_features: eval"
            )
        return stream


@METHODS.register("lp")
class LinearProbe(Method):
    name = "lp"
    options_model = LinearProbeOptions

    def seed_dependent(self, options: LinearProbeOptions) -> bool:
        return options.train_features == "augmented"

    def cells(self, options: LinearProbeOptions) -> list[dict[str, float]]:
        return [{}]

    def sweep_axes(self, options: LinearProbeOptions) -> tuple[str, ...]:
        return ("C",)

    def quick_options(self, options: LinearProbeOptions) -> dict[str, Any]:
        return {"C": options.C[::3]}

    def fit(
        self,
        ctx: MethodContext,
        options: LinearProbeOptions,
        hparams: dict[str, float],
        seed: int,
        cell_dir: Path,
        required: Mapping[str, Selected],
    ) -> list[Candidate]:
        on_disk = self.streamed_train(ctx, options)
        train = None if on_disk is not None else self.train_features(ctx, options, seed)
        val = ctx.features.get("id_val")
        task = ctx.progress.add_task("LP sweep over C", total=len(options.C))
        if on_disk is not None:
            solutions, infos = self.solve_streamed(
                options, on_disk, ctx.benchmark.num_classes, lambda: ctx.progress.advance(task)
            )
        else:
            solutions, infos = self.solve_path(
                ctx, options, train, seed, on_step=lambda: ctx.progress.advance(task)
            )
        ctx.progress.remove_task(task)
        val_features = val.features.to(ctx.device)
        candidates = []
        for index, (solution, info) in enumerate(zip(solutions, infos, strict=True)):
            logits = predict_logits(
                val_features, solution.weight.to(ctx.device), solution.bias.to(ctx.device)
            )
            candidates.append(
                Candidate(
                    hparams={"C": solution.C},
                    id_val=accuracy(logits, val.labels),
                    kind="head",
                    artifact=HEADS,
                    index=index,
                    info=info,
                )
            )
        if is_main_process():
            save_heads(cell_dir, solutions)
        return candidates

    def train_features(
        self, ctx: MethodContext, options: LinearProbeOptions, seed: int
    ) -> ForwardOutputs:
        if options.train_features == "augmented":
            return ctx.features.augmented("id_train", seed)
        return ctx.features.get("id_train")

    def streamed_train(
        self, ctx: MethodContext, options: LinearProbeOptions
    ) -> CachedFeatures | None:
        """ID train's disk-cache entry when this fit streams from it (``options.stream``)."""
        num_classes = ctx.benchmark.num_classes
        if (
            options.stream == "never"
            or options.train_features == "augmented"
            or options.solver not in STREAMING_SOLVERS
        ):
            return None
        entry = ctx.features.on_disk("id_train")
        if entry is None:
            if options.stream == "always":
                raise ConfigError(
                    "lp option stream: 'always' reads the on-disk feature cache, which this run "
                    "does not have (feature_cache: false, or several processes); use 'auto'"
                )
            return None
        rows, dim = entry.features.shape
        host = physical_memory_bytes()
        if options.stream == "always" or exceeds_memory_share(rows, dim, num_classes, host):
            return entry
        return None

    def solve_streamed(
        self,
        options: LinearProbeOptions,
        entry: CachedFeatures,
        num_classes: int,
        on_step: Callable[[], None],
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """The path by Newton-CG over the entry's features read in blocks of rows."""
        source = entry.feature_chunks()
        path = LogisticRegressionPath.streamed(
            source,
            torch.from_numpy(np.array(entry.labels, dtype=np.int64)),
            num_classes,
            standardize=options.standardize,
            tol=options.tol,
            max_iter=options.max_iter,
            chunk_rows=stream_chunk_rows(source.dim),
        )
        solutions = path.fit_path(options.C, on_step=lambda _s: on_step())
        return solutions, exact_infos(path.solver, solutions, streamed=True, tol=options.tol)

    def solve_path(
        self,
        ctx: MethodContext,
        options: LinearProbeOptions,
        train: ForwardOutputs,
        seed: int,
        on_step: Callable[[], None],
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """Every C's head (raw-feature coordinates) and its solver facts, by ``options.solver``."""
        if options.solver == "official":
            solutions = official_lp_path(
                train.features,
                train.labels,
                ctx.benchmark.num_classes,
                options.C,
                seed=seed,
                on_step=lambda _s: on_step(),
            )
            infos = [
                {"solver": "official", "iterations": s.iterations, "converged": s.converged}
                for s in solutions
            ]
            return solutions, infos
        device = solve_device(ctx.device, *train.features.shape, ctx.benchmark.num_classes)
        path = LogisticRegressionPath(
            train.features.to(device),
            train.labels.to(device),
            ctx.benchmark.num_classes,
            standardize=options.standardize,
            tol=options.tol,
            max_iter=options.max_iter,
            solver=options.solver,
            memory_limit=int(IN_MEMORY_SHARE * device_memory_bytes(device)),
        )
        solutions = path.fit_path(options.C, on_step=lambda _s: on_step())
        return solutions, exact_infos(path.solver, solutions, streamed=False, tol=options.tol)

    def predictors(
        self, ctx: MethodContext, cell_dir: Path, candidates: list[Candidate]
    ) -> Iterator[LinearHead]:
        """Every candidate's head from one read of ``heads.pt``."""
        weights, biases = load_heads(cell_dir)
        for candidate in candidates:
            yield LinearHead(weights[candidate.index], biases[candidate.index])

    def describe(self, options: LinearProbeOptions) -> dict[str, str]:
        return {
            "batchnorm": "frozen",
            "grid": f"C: {len(options.C)} values",
            "solver": solver_description(options),
            "train_features": options.train_features,
        }


def exact_infos(
    solver: str, solutions: list[Any], streamed: bool, tol: float
) -> list[dict[str, Any]]:
    """Each C's solver facts, as recorded with its candidate (a C that stopped above ``tol`` is
    marked in the tables and warned about)."""
    return [
        {
            "solver": solver,
            "iterations": s.iterations,
            "converged": s.converged,
            "grad_max": s.grad_max,
            "tol": tol,
            "streamed": streamed,
        }
        for s in solutions
    ]


def physical_memory_bytes() -> int:
    """The machine's memory, or the control group's limit when lower (a Slurm job's share)."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        physical = FALLBACK_MEMORY_BYTES
    return min([physical, *(limit for limit in map(_read_limit, CGROUP_LIMITS) if limit)])


def _read_limit(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def device_memory_bytes(device: torch.device) -> int:
    """The memory an in-memory solve on ``device`` may use: a CUDA device's free memory (its
    allocator's cached blocks included), else the host's (``physical_memory_bytes``)."""
    if device.type != "cuda":
        return physical_memory_bytes()
    free, _total = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def in_memory_bytes(rows: int, dim: int, num_classes: int) -> int:
    """The in-memory exact solve's peak: ``FEATURE_COPIES`` n x d and ``CLASS_COPIES`` n x k
    float64 arrays."""
    return 8 * rows * (FEATURE_COPIES * dim + CLASS_COPIES * num_classes)


def exceeds_memory_share(rows: int, dim: int, num_classes: int, memory: int) -> bool:
    """Whether the in-memory solve would take more than ``IN_MEMORY_SHARE`` of ``memory``."""
    return in_memory_bytes(rows, dim, num_classes) > IN_MEMORY_SHARE * memory


def solve_device(device: torch.device, rows: int, dim: int, num_classes: int) -> torch.device:
    """The run's device for an in-memory solve that fits its memory share there, else the
    host (whose share ``stream: auto`` has already checked)."""
    if device.type == "cpu":
        return device
    fits = not exceeds_memory_share(rows, dim, num_classes, device_memory_bytes(device))
    return device if fits else torch.device("cpu")


def stream_chunk_rows(dim: int) -> int:
    return max(1, STREAM_CHUNK_BYTES // (8 * dim))


def solver_description(options: LinearProbeOptions) -> str:
    if options.solver == "official":
        return f"official (scikit-learn L-BFGS, warm start, {OFFICIAL_MAX_ITER} iterations per C)"
    return f"exact ({options.solver}, gradient <= {options.tol:g})"


def save_heads(cell_dir: Path, solutions: list[Any]) -> None:
    """Every C's head in one file (written by one process under torchrun)."""
    atomic_torch_save(
        Path(cell_dir) / HEADS,
        {
            "C": torch.tensor([s.C for s in solutions], dtype=torch.float64),
            "weight": torch.stack([s.weight.cpu() for s in solutions]),
            "bias": torch.stack([s.bias.cpu() for s in solutions]),
        },
    )


def load_heads(cell_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every C's (weight, bias) of an LP cell, stacked, in raw-feature coordinates."""
    path = Path(cell_dir) / HEADS
    try:
        heads = torch.load(path, map_location="cpu", weights_only=True)
        return heads["weight"], heads["bias"]
    except (OSError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: LP heads unreadable ({type(exc).__name__}); delete {path.parent} to refit LP"
        ) from None
