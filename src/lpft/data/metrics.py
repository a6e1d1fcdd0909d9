"""How an evaluation split is scored: named functions of (logits, labels, split).

Every split has ``accuracy`` (with its optional restriction of the argmax to a class subset);
a benchmark may add more, e.g. WILDS' worst-region accuracy, which reads per-example metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from lpft.training.evaluate import accuracy, predictions

PRIMARY_METRIC = "accuracy"


class ScoredSplit(Protocol):
    """What a metric may read of the split it scores (``lpft.data.EvalSplit``)."""

    class_subset: tuple[int, ...] | None
    metadata: dict[str, Sequence[Any]]


Metric = Callable[[torch.Tensor, torch.Tensor, ScoredSplit], float]


def split_accuracy(logits: torch.Tensor, labels: torch.Tensor, split: ScoredSplit) -> float:
    return accuracy(logits, labels, split.class_subset)


def worst_group_accuracy(field: str, ignore: Sequence[str] = ()) -> Metric:
    """The lowest accuracy over the groups named by ``split.metadata[field]`` (one value per
    example), leaving out the groups in ``ignore`` (WILDS leaves out FMoW's region 'Other')."""

    def metric(logits: torch.Tensor, labels: torch.Tensor, split: ScoredSplit) -> float:
        groups = np.asarray(split.metadata[field])
        correct = (predictions(logits, split.class_subset).cpu() == labels.cpu()).numpy()
        per_group = [
            float(correct[groups == group].mean())
            for group in np.unique(groups)
            if group not in ignore
        ]
        return min(per_group) if per_group else float("nan")

    return metric


def default_metrics() -> dict[str, Metric]:
    return {PRIMARY_METRIC: split_accuracy}
