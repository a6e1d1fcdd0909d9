"""``lpft data check``: is a benchmark's data where it is expected, and what does it hold?

Every split is listed as found or missing; a missing one names each path it needs and how to
obtain it. When every path is present the benchmark is built, so a wrong layout or format shows
up as ``malformed`` with the reader's message, and the image and class count of each split is
shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from lpft.data.benchmark import (
    BENCHMARKS,
    ID_SPLITS,
    Benchmark,
    BuildContext,
    Requirement,
    expected_layout,
    validate_benchmark_options,
)
from lpft.data.cache import lpft_home
from lpft.data.folder import skipped_note
from lpft.errors import DataError


@dataclass
class SplitStatus:
    split: str
    status: str  # "found" | "missing" | "malformed"
    images: int | None = None
    classes: int | None = None
    missing: list[Requirement] = field(default_factory=list)


@dataclass
class CheckReport:
    benchmark: str
    data_root: Path | None
    splits: list[SplitStatus]
    problem: str | None = None
    # What the reader left out and why (files in no format Pillow opens).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None and all(s.status == "found" for s in self.splits)


def dataset_labels(dataset: Dataset) -> Sequence[int] | None:
    """The labels of a dataset without reading its images, when it exposes them."""
    return getattr(dataset, "labels", None)


def _count(dataset: Dataset) -> tuple[int, int | None]:
    labels = dataset_labels(dataset)
    return len(dataset), (len(set(int(x) for x in labels)) if labels is not None else None)


def split_datasets(benchmark: Benchmark) -> dict[str, Dataset]:
    named: dict[str, Dataset] = {
        "id_train": benchmark.id_train,
        "id_val": benchmark.id_val,
        "id_test": benchmark.id_test,
    }
    named.update({f"ood:{n}": s.dataset for n, s in benchmark.ood.items()})
    named.update({f"ood_val:{n}": s.dataset for n, s in benchmark.ood_val.items()})
    return named


def _layout_splits(layout: list[Requirement]) -> list[str]:
    names = dict.fromkeys(ID_SPLITS)
    for requirement in layout:
        names.update(dict.fromkeys(requirement.splits))
    return list(names)


def check_benchmark(
    name: str,
    options: dict[str, Any] | None = None,
    data_root: Path | None = None,
    cache_dir: Path | None = None,
) -> CheckReport:
    validated = validate_benchmark_options(name, options or {})
    layout = expected_layout(name, validated, data_root)
    missing = [r for r in layout if not r.present()]
    if missing:
        splits = [
            SplitStatus(
                split,
                "missing" if any(split in r.splits for r in missing) else "found",
                missing=[r for r in missing if split in r.splits],
            )
            for split in _layout_splits(layout)
        ]
        return CheckReport(name, data_root, splits)
    context = BuildContext(data_root, cache_dir or lpft_home(), skip_bad_images=False)
    try:
        benchmark = BENCHMARKS.get(name).build(context, validated)
    except DataError as exc:
        splits = [SplitStatus(split, "malformed") for split in _layout_splits(layout)]
        return CheckReport(name, data_root, splits, problem=str(exc))
    splits = [
        SplitStatus(split, "found", *_count(dataset))
        for split, dataset in split_datasets(benchmark).items()
    ]
    skipped = benchmark.info.get("skipped_files")
    return CheckReport(name, data_root, splits, notes=[skipped_note(skipped)] if skipped else [])


def format_report(report: CheckReport) -> str:
    lines = [f"benchmark {report.benchmark}, data root {report.data_root}"]
    width = max(len(s.split) for s in report.splits) if report.splits else 8
    for split in report.splits:
        counts = ""
        if split.images is not None:
            classes = f", {split.classes} classes" if split.classes is not None else ""
            counts = f"  {split.images} images{classes}"
        lines.append(f"  {split.split:<{width}}  {split.status}{counts}")
        for requirement in split.missing:
            lines.append(f"      expected {requirement.kind} {requirement.path}")
        for how in dict.fromkeys(r.how for r in split.missing):
            lines.append(f"      get it: {how}")
    lines += [f"  note: {note}" for note in report.notes]
    if report.problem:
        lines.append(f"  problem: {report.problem}")
    lines.append("all splits found" if report.ok else "data check failed")
    return "\n".join(lines)
