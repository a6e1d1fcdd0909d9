"""Accuracy, with an OOD set's optional restriction of the argmax to its classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def predictions(logits: torch.Tensor, class_subset: Sequence[int] | None = None) -> torch.Tensor:
    if class_subset is None:
        return logits.argmax(dim=1)
    subset = torch.as_tensor(list(class_subset), dtype=torch.long, device=logits.device)
    return subset[logits[:, subset].argmax(dim=1)]


def accuracy(
    logits: torch.Tensor, labels: torch.Tensor, class_subset: Sequence[int] | None = None
) -> float:
    """Fraction of correct predictions (0..1)."""
    if len(labels) == 0:
        return float("nan")
    correct = predictions(logits, class_subset).cpu() == labels.cpu()
    return float(correct.double().mean())
