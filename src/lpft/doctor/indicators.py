"""What the doctor measures, from labelled ID data and unlabeled target inputs only.

- ``uncovered_energy``: the share of the centred target features' energy outside the span of
  the ID training features' leading principal directions (the paper's S-perp, in feature space).
- ``relative_change``: how far fine-tuning moved the features of a set of inputs, relative to
  their pretrained norm (``analysis.distortion``); its ratio on target against ID inputs is the
  distortion asymmetry (the paper: FT changes features only where the ID data lie).
- ``agreement``: the share of target inputs on which two predictors give the same class.
- ``change_ratio``: the distortion asymmetry with its bootstrap standard error.
"""

from __future__ import annotations

import torch

from lpft.analysis.distortion import feature_change

# Leading ID directions: the fewest principal directions holding this share of the energy.
ID_SPAN_ENERGY = 0.99


def leading_directions(features: torch.Tensor, energy: float = ID_SPAN_ENERGY) -> torch.Tensor:
    """Orthonormal columns spanning the leading principal directions of centred ``features``."""
    centred = features.double() - features.double().mean(dim=0)
    _, singular, vt = torch.linalg.svd(centred, full_matrices=False)
    shares = torch.cumsum(singular**2, 0) / torch.sum(singular**2)
    rank = int(torch.searchsorted(shares, torch.tensor(energy, dtype=shares.dtype))) + 1
    return vt[: min(rank, len(singular))].T


def uncovered_energy(id_features: torch.Tensor, target_features: torch.Tensor) -> float:
    """Share of the centred target features' energy outside the leading ID directions."""
    basis = leading_directions(id_features)
    centred = target_features.double() - target_features.double().mean(dim=0)
    total = float(torch.sum(centred**2))
    if total == 0:
        return 0.0
    inside = float(torch.sum((centred @ basis) ** 2))
    return max(0.0, 1.0 - inside / total)


def relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    return feature_change(before, after)["relative"]


def agreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    return float((logits_a.argmax(dim=1) == logits_b.argmax(dim=1)).double().mean())


def change_ratio(
    before_target: torch.Tensor,
    after_target: torch.Tensor,
    before_id: torch.Tensor,
    after_id: torch.Tensor,
    resamples: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """Relative feature change on target inputs over that on ID inputs, and its bootstrap
    standard error (both sets resampled with replacement)."""

    def norms(before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        before, after = before.double(), after.double()
        moved = torch.linalg.vector_norm(after - before, dim=1)
        return moved, torch.linalg.vector_norm(before, dim=1)

    target_moved, target_norm = norms(before_target, after_target)
    id_moved, id_norm = norms(before_id, after_id)

    def ratio(t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        target = target_moved[t].mean(-1) / target_norm[t].mean(-1)
        return target / (id_moved[i].mean(-1) / id_norm[i].mean(-1))

    generator = torch.Generator().manual_seed(seed)
    t = torch.randint(len(target_moved), (resamples, len(target_moved)), generator=generator)
    i = torch.randint(len(id_moved), (resamples, len(id_moved)), generator=generator)
    whole = ratio(torch.arange(len(target_moved)), torch.arange(len(id_moved)))
    return float(whole), float(ratio(t, i).std())
