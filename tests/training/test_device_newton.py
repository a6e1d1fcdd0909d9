"""The accelerator Newton-CG reaches the CPU solver's optima without reading the device mid-path.

Runs on CPU tensors: the code path is the one a GPU takes (``LogisticRegressionPath`` picks it
for non-CPU features); here it is attached to a CPU path by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from lpft.training import device_newton
from lpft.training.logreg import LogisticRegressionPath, predict_logits

# What makes the host wait for a device: reading a value or copying to the CPU.
READS = {"item", "__float__", "__bool__", "__int__", "__index__", "tolist", "cpu", "numpy"}


class ReadRecorder(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


def problem(n: int = 400, d: int = 48, k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.sqrt(np.arange(1, d + 1))
    labels = rng.integers(k, size=n)
    means = rng.normal(size=(k, d)) * scales
    x = np.maximum(means[labels] + rng.normal(size=(n, d)) * scales + 0.3, 0.0)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(labels)


def on_device_solver(x: torch.Tensor, y: torch.Tensor, k: int) -> LogisticRegressionPath:
    path = LogisticRegressionPath(x, y, k, solver="newton-cg")
    path._objective = device_newton.DeviceObjective(path.basis.z, path.labels, k)
    return path


GRID = [float(c) for c in np.logspace(-5, 2, 10)]


def test_device_path_reaches_the_cpu_optima() -> None:
    x, y = problem()
    cpu = LogisticRegressionPath(x, y, 5, solver="newton-cg").fit_path(GRID)
    device = on_device_solver(x, y, 5).fit_path(GRID)
    for ours, reference in zip(device, cpu, strict=True):
        assert ours.converged and ours.grad_max <= 1e-7
        assert ours.iterations >= 1
        torch.testing.assert_close(
            predict_logits(x, ours.weight, ours.bias),
            predict_logits(x, reference.weight, reference.bias),
            rtol=0,
            atol=1e-4,
        )


def test_the_path_reads_the_device_only_after_every_c_is_queued() -> None:
    x, y = problem(seed=1)
    path = on_device_solver(x, y, 5)
    recorder = ReadRecorder()
    with recorder:
        solutions = path.fit_path(GRID)
    # One read of every C's gradient norm (no C needs a second round), then the host copies
    # of iteration counts and norms for the solutions it returns.
    assert recorder.reads == ["cpu", "tolist", "tolist", "tolist"]
    assert all(s.converged for s in solutions)


def test_a_c_left_above_tolerance_gets_further_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_newton, "NEWTON_STEPS", 1)
    monkeypatch.setattr(device_newton, "CG_STEPS", 3)
    x, y = problem(seed=2)
    solutions = on_device_solver(x, y, 5).fit_path(GRID, warm_start=False)
    assert all(s.converged for s in solutions)
    assert max(s.iterations for s in solutions) > 1
    budget = on_device_solver(x, y, 5)
    budget.max_iter = 1
    assert not all(s.converged for s in budget.fit_path(GRID, warm_start=False))
