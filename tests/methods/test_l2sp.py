"""L2-SP with α = β = 0 is FT, bit for bit; a strong α keeps the backbone near w₀."""

from __future__ import annotations

import torch

from lpft.methods.l2sp import L2SP, L2SPOptions
from lpft.run.runner import Runner
from tests_support import best_state, pretrained_state


def test_zero_penalty_equals_ft_bitwise(fine_tuning_run: Runner) -> None:
    ft, l2sp = best_state(fine_tuning_run, "ft"), best_state(fine_tuning_run, "l2sp")
    assert ft.keys() == l2sp.keys()
    assert all(torch.equal(ft[k], l2sp[k]) for k in ft)
    ft_history = fine_tuning_run.cells["ft"][0].candidates[0].info["history"]
    l2sp_history = fine_tuning_run.cells["l2sp"][0].candidates[0].info["history"]
    assert ft_history == l2sp_history


def distance_from_pretrained(runner: Runner, key: str) -> float:
    state, start = best_state(runner, key), pretrained_state(runner)
    return sum(
        float((state[k] - start[k]).pow(2).sum())
        for k in start
        if start[k].is_floating_point() and "running" not in k
    )


def test_strong_alpha_keeps_the_backbone_near_the_pretrained_weights(
    fine_tuning_run: Runner,
) -> None:
    assert distance_from_pretrained(
        fine_tuning_run, "l2sp@strong"
    ) < 0.5 * distance_from_pretrained(fine_tuning_run, "ft")


def test_cells_sweep_lr_then_alpha() -> None:
    options = L2SPOptions(lrs=[0.1, 0.01], alphas=[0.0, 1.0])
    assert L2SP().cells(options) == [
        {"lr": 0.1, "alpha": 0.0},
        {"lr": 0.1, "alpha": 1.0},
        {"lr": 0.01, "alpha": 0.0},
        {"lr": 0.01, "alpha": 1.0},
    ]
    assert L2SP().sweep_axes(options) == ("lr", "alpha")
