"""Two gloo processes see the global batch: BatchNorm in train mode (outputs, gradients, running
statistics), dropout and stochastic-depth masks, and the resume state all equal one process.

The two processes are spawned once for the module; each scenario's results are saved per rank
and compared with the same computation done here in one process.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torchvision.ops import StochasticDepth

from lpft.config import resolve_config
from lpft.errors import ConfigError, LpftError
from lpft.models.backbone import Classifier
from lpft.models.glyph_resnet import GlyphResNet
from lpft.training.global_batch import (
    convert_to_global_batchnorm,
    mask_kind,
    unrouted_randomness,
)
from lpft.training.loaders import TensorImageDataset, eval_loader
from lpft.training.trainer import LAST, FineTuner, TrainingOptions

WORLD = 2
LR = 0.05
OPTIONS = {"epochs": 2, "batch_size": 8, "checkpoint_every_steps": 3}
STOP_AT_STEP = 10  # epoch 2, step 4: the last checkpoint is epoch 2, step 3


class DropoutGlyphNet(GlyphResNet):
    """The tiny glyph net with stochastic depth on its first stage and dropout on its features."""

    def __init__(self) -> None:
        super().__init__(widths=(8, 16, 16), blocks_per_stage=1)
        self.drop_path = StochasticDepth(0.4, "row")
        self.dropout = nn.Dropout(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        out = out + self.drop_path(self.stages[0](out))
        for stage in self.stages[1:]:
            out = stage(out)
        return self.dropout(out.mean(dim=(2, 3)))


class AttentionDropoutNet(GlyphResNet):
    """Has attention dropout inside ``nn.MultiheadAttention``, which cannot be split."""

    def __init__(self) -> None:
        super().__init__(widths=(8, 16, 16), blocks_per_stage=1)
        self.attention = nn.MultiheadAttention(16, 2, dropout=0.1)


def split(count: int, seed: int) -> TensorImageDataset:
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(count) % 4
    images = prototypes[labels] + 0.6 * torch.randn(count, 1, 8, 8, generator=generator)
    return TensorImageDataset(images, labels)


def classifier(net: type[GlyphResNet]) -> Classifier:
    torch.manual_seed(0)
    if net is GlyphResNet:
        return Classifier(GlyphResNet(widths=(8, 16, 16), blocks_per_stage=1), 4)
    return Classifier(net(), 4)


class Stop(Exception):
    pass


def fine_tune(net: type[GlyphResNet], cell_dir: Path, lr: float = LR, stop: bool = False) -> dict:
    """Final weights and history of one cell (``stop``: interrupted at ``STOP_AT_STEP``)."""

    def interrupt(step: int, total: int) -> None:
        if stop and step == STOP_AT_STEP:
            raise Stop

    trainer = FineTuner(
        classifier(net),
        TrainingOptions(**OPTIONS),
        lr,
        split(48, seed=1),
        eval_loader(split(40, seed=2), 16, 0),
        torch.device("cpu"),
        cell_dir,
        seed=0,
        on_step=interrupt,
    )
    outcome = trainer.fit()
    return {
        "model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
        "history": [vars(record) for record in outcome.history],
    }


def batchnorm_step(rank: int) -> dict:
    """One BatchNorm layer in train mode, two steps on (a slice of) a fixed batch of 16."""
    generator = torch.Generator().manual_seed(5)
    inputs = [torch.randn(16, 3, 4, 4, generator=generator) * 3 + 1 for _ in range(2)]
    weights = torch.randn(16, 3, 4, 4, generator=generator)
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(3)
    nn.init.uniform_(norm.weight)
    nn.init.uniform_(norm.bias)
    if dist.is_initialized():
        norm = convert_to_global_batchnorm(nn.Sequential(norm))[0]
    rows = slice(rank * 8, rank * 8 + 8) if dist.is_initialized() else slice(None)
    result: dict = {}
    for step, full in enumerate(inputs):
        x = full[rows].clone().requires_grad_()
        out = norm(x)
        (out * weights[rows]).sum().backward()
        result[f"out{step}"] = out.detach()
        result[f"grad{step}"] = x.grad
    grads = torch.stack([norm.weight.grad, norm.bias.grad])
    if dist.is_initialized():
        dist.all_reduce(grads)
    result["param_grads"] = grads
    result["running"] = {k: v.clone() for k, v in norm.state_dict().items()}
    return result


def scenario_outcome(run) -> object:
    try:
        return run()
    except LpftError as exc:
        return f"{type(exc).__name__}: {exc}"


def worker(rank: int, store: str, cells: Path, out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", f"file://{store}", timeout=timedelta(seconds=90), world_size=WORLD, rank=rank
    )
    mine = cells / f"rank{rank}"
    results = {
        "batchnorm": batchnorm_step(rank),
        "bn_train": fine_tune(GlyphResNet, mine / "bn"),
        "dropout": fine_tune(DropoutGlyphNet, mine / "dropout"),
        "resumed": fine_tune(DropoutGlyphNet, mine / "resume"),
        "attention": scenario_outcome(lambda: fine_tune(AttentionDropoutNet, mine / "mha")),
        "unreadable": scenario_outcome(lambda: fine_tune(GlyphResNet, mine / "unreadable")),
    }
    torch.save(results, out / f"rank{rank}.pt")
    dist.destroy_process_group()


def interrupted_checkpoint(directory: Path, lr: float) -> Path:
    """``last.pt`` of a one-process dropout cell interrupted mid-epoch."""
    with pytest.raises(Stop):
        fine_tune(DropoutGlyphNet, directory, lr=lr, stop=True)
    return directory / LAST


def prepare_cells(cells: Path) -> None:
    """Rank 0's resume directory holds the interrupted cell's ``last.pt``; rank 1's holds a
    different cell's (another learning rate), as a node with its own disk might; an unreadable
    ``last.pt`` on rank 0 only."""
    for rank, lr in ((0, LR), (1, 0.3)):
        target = cells / f"rank{rank}" / "resume"
        target.mkdir(parents=True)
        shutil.copy(interrupted_checkpoint(cells / f"interrupted-{lr}", lr), target / LAST)
    (cells / "rank0" / "unreadable").mkdir(parents=True)
    (cells / "rank0" / "unreadable" / LAST).write_bytes(b"not a checkpoint")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("global-batch")
    cells, out = root / "cells", root / "out"
    out.mkdir()
    prepare_cells(cells)
    mp.spawn(worker, args=(str(root / "store"), cells, out), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("single")
    return {
        "batchnorm": batchnorm_step(0),
        "bn_train": fine_tune(GlyphResNet, root / "bn"),
        "dropout": fine_tune(DropoutGlyphNet, root / "dropout"),
    }


def assert_same_cell(cell: dict, reference: dict) -> None:
    for key, tensor in reference["model"].items():
        torch.testing.assert_close(cell["model"][key], tensor, rtol=1e-5, atol=1e-6, msg=key)
    assert len(cell["history"]) == len(reference["history"])
    for epoch, ref in zip(cell["history"], reference["history"], strict=True):
        assert epoch["id_val"] == pytest.approx(ref["id_val"], abs=1e-9)
        assert epoch["train_acc"] == pytest.approx(ref["train_acc"], abs=1e-9)
        assert epoch["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-5)


def test_batchnorm_normalises_and_keeps_statistics_over_the_global_batch(ranks, single) -> None:
    reference = single["batchnorm"]
    for rank, results in enumerate(ranks):
        mine = results["batchnorm"]
        rows = slice(rank * 8, rank * 8 + 8)
        for step in range(2):
            torch.testing.assert_close(mine[f"out{step}"], reference[f"out{step}"][rows])
            torch.testing.assert_close(mine[f"grad{step}"], reference[f"grad{step}"][rows])
        torch.testing.assert_close(mine["param_grads"], reference["param_grads"])
        for key, value in reference["running"].items():
            torch.testing.assert_close(mine["running"][key], value)
            assert torch.equal(mine["running"][key], ranks[0]["batchnorm"]["running"][key])


def test_batchnorm_in_train_mode_trains_what_one_process_trains(ranks, single) -> None:
    for results in ranks:
        assert_same_cell(results["bn_train"], single["bn_train"])


def test_dropout_and_stochastic_depth_draw_the_one_process_masks(ranks, single) -> None:
    for results in ranks:
        assert_same_cell(results["dropout"], single["dropout"])


def test_every_rank_resumes_from_rank_0s_state_not_its_own_file(ranks, single) -> None:
    """An interrupted one-process cell resumed by two processes ends where the uninterrupted
    cell ends, on both ranks, though rank 1's own ``last.pt`` is another cell's."""
    for results in ranks:
        assert_same_cell(results["resumed"], single["dropout"])


def test_an_unreadable_resume_state_fails_every_rank(ranks) -> None:
    for results in ranks:
        assert results["unreadable"].startswith("CheckpointError: resume checkpoint")


def test_masks_that_cannot_be_split_are_refused_under_ddp(ranks, tmp_path: Path) -> None:
    for results in ranks:
        assert results["attention"].startswith(
            "ConfigError: layers backbone.attention draw random masks that cannot be split"
        )
    one_process = fine_tune(AttentionDropoutNet, tmp_path)
    assert len(one_process["history"]) == OPTIONS["epochs"]


def test_sync_batchnorm_is_refused_as_it_has_no_effect() -> None:
    overrides = {"benchmark": "tiny", "methods": {"ft": {"sync_batchnorm": True}}}
    with pytest.raises(ConfigError, match=r"methods\.ft\.sync_batchnorm=True is invalid: not an"):
        resolve_config(overrides=overrides)
    assert "sync_batchnorm" not in TrainingOptions().model_dump()


def test_mask_layers_of_torch_torchvision_and_timm_are_recognised() -> None:
    # here, not at the top: the spawned ranks do not need timm
    from timm.layers import DropPath
    from timm.models.vision_transformer import Attention

    layers = [nn.Dropout(0.1), nn.Dropout2d(0.1), StochasticDepth(0.1, "row"), DropPath(0.1)]
    assert [mask_kind(layer) for layer in layers] == ["elementwise", "elementwise", "row", "row"]
    assert mask_kind(nn.AlphaDropout(0.1)) is None
    net = nn.Sequential(
        nn.AlphaDropout(0.2),
        nn.MultiheadAttention(8, 2, dropout=0.1),
        nn.MultiheadAttention(8, 2),
        nn.Dropout(0.5),
        Attention(8, 2, attn_drop=0.1),
        Attention(8, 2),
    )
    assert unrouted_randomness(net) == ["0", "1", "4"]
    net[4].fused_attn = False  # the attention matrix then goes through its nn.Dropout
    assert unrouted_randomness(net) == ["0", "1"]
