"""The accelerator Newton-CG reaches the CPU solver's optima without reading the device mid-path.

Runs on CPU tensors: the code path is the one a GPU takes (``LogisticRegressionPath`` picks it
for non-CPU features); here it is attached to a CPU path by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from lpft.training import device_newton, newton_cg
from lpft.training.logreg import LogisticRegressionPath, predict_logits
from lpft.training.newton_rules import ROUNDING, cg_target, flat_step_helps

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


def objectives(seed: int = 3, k: int = 5):
    """The same rotated features as the CPU solver's (numpy) and the device's objective."""
    x, y = problem(seed=seed)
    path = LogisticRegressionPath(x, y, k, solver="newton-cg")
    z = path.basis.z
    cpu = newton_cg.InMemoryObjective(z.numpy(), path.labels.numpy(), k)
    return cpu, device_newton.DeviceObjective(z, path.labels, k), z.shape[1]


def test_the_line_search_backtracks_as_far_as_the_cpu_one() -> None:
    """A step so long that only t < 2^-11 satisfies Armijo: both solvers find the same t."""
    cpu, device, r = objectives()
    penalty = 1e-3
    coef, intercept = np.zeros((5, r)), np.zeros(5)
    here = cpu.evaluate(coef, intercept, penalty)
    s_coef, s_int = -1e7 * here.g_coef, -1e7 * here.g_int
    grad_max = float(max(np.abs(here.g_coef).max(), np.abs(here.g_int).max()))
    cpu_coef, _, _ = newton_cg._line_search(
        cpu, here, coef, intercept, s_coef, s_int, penalty, grad_max
    )
    cpu_step = float(cpu_coef.flat[np.abs(s_coef).argmax()] / s_coef.flat[np.abs(s_coef).argmax()])
    assert cpu_step < 2**-11

    tensors = [torch.from_numpy(a) for a in (coef, intercept, s_coef, s_int)]
    penalty_t = torch.tensor(penalty, dtype=torch.float64)
    current = device.evaluate(tensors[0], tensors[1], penalty_t)
    full = device.evaluate(tensors[0] + tensors[2], tensors[1] + tensors[3], penalty_t)
    moved = device.z @ tensors[2].T + tensors[3]
    step = device_newton._line_search(
        device, current, full, moved, tensors[0], tensors[2], tensors[3], penalty_t
    )
    assert float(step) == pytest.approx(cpu_step, rel=1e-12)


def test_a_flat_full_step_is_taken_only_when_it_shrinks_the_gradient() -> None:
    """Where no step satisfies Armijo, the full step is taken when its loss is flat to rounding
    and its gradient smaller (``newton_rules.flat_step_helps``), never otherwise."""
    _, device, r = objectives()
    penalty = torch.tensor(1e-3, dtype=torch.float64)
    coef, intercept = torch.zeros(5, r, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    current = device.evaluate(coef, intercept, penalty)
    uphill = (1e3 * current["g_coef"], 1e3 * current["g_int"])
    loss, grad_max = current["loss"], current["grad_max"]
    for gradient, expected in ((2 * grad_max, 0.0), (0.5 * grad_max, 1.0)):
        flat = {"loss": loss + 0.5 * ROUNDING, "grad_max": gradient}
        rule = flat_step_helps(float(flat["loss"]), float(loss), float(gradient), float(grad_max))
        assert rule == bool(expected)
        moved = device.z @ uphill[0].T + uphill[1]
        step = device_newton._line_search(device, current, flat, moved, coef, *uphill, penalty)
        assert float(step) == expected


def test_the_device_cg_target_is_the_shared_rule() -> None:
    for grad_max in (1e-9, 1e-4, 0.02, 0.5, 3.0):
        on_device = device_newton.cg_target(torch.tensor(grad_max, dtype=torch.float64), 1e-7)
        assert float(on_device) == pytest.approx(cg_target(grad_max, 1e-7), rel=1e-15)


def test_no_c_takes_more_newton_steps_than_max_iter() -> None:
    x, y = problem(seed=2)
    path = on_device_solver(x, y, 5)
    path.max_iter = 2
    solutions = path.fit_path(GRID, warm_start=False)
    assert max(s.iterations for s in solutions) == 2
    assert not all(s.converged for s in solutions)
