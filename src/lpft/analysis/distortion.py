"""How much fine-tuning moved the features: Euclidean change and linear CKA, per block.

Both are computed on the same inputs, same transform, both networks in eval mode. Block
outputs are average-pooled over space (or tokens) before comparison.
"""

from __future__ import annotations

from typing import Any

import torch

from lpft.training.features import ForwardOutputs


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment between two representations of the same n inputs.

    1 means identical up to rotation and isotropic scaling; computed in the feature-space
    form ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), O(n p q) time.
    """
    x = x.double() - x.double().mean(dim=0)
    y = y.double() - y.double().mean(dim=0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm_x = torch.linalg.matrix_norm(x.T @ x)
    norm_y = torch.linalg.matrix_norm(y.T @ y)
    if norm_x == 0 or norm_y == 0:
        return float("nan")
    return float(cross / (norm_x * norm_y))


def feature_change(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """Mean per-input Euclidean change, that change relative to the mean pretrained norm, CKA."""
    before, after = before.double(), after.double()
    change = torch.linalg.vector_norm(after - before, dim=1).mean()
    norm = torch.linalg.vector_norm(before, dim=1).mean()
    return {
        "l2": float(change),
        "relative": float(change / norm) if norm > 0 else float("nan"),
        "cka": linear_cka(before, after),
    }


def distortion(pretrained: ForwardOutputs, finetuned: ForwardOutputs) -> dict[str, Any]:
    """Penultimate and per-block change between two passes over the same split."""
    return {
        "penultimate": feature_change(pretrained.features, finetuned.features),
        "blocks": {
            name: feature_change(pretrained.blocks[name], finetuned.blocks[name])
            for name in pretrained.blocks
        },
    }
