"""Checkpoints written in the background hold the state of the moment they were asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lpft.training.checkpoint_writer import BackgroundWriter, host_copy


def test_a_write_holds_the_state_when_it_was_queued_not_later_changes(tmp_path: Path) -> None:
    weights = torch.zeros(1000)
    momentum = {"state": {0: {"buf": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}
    writer = BackgroundWriter()
    writer.save(tmp_path / "last.pt", host_copy({"w": weights, "opt": momentum}))
    weights.add_(1.0)
    momentum["state"][0]["buf"].mul_(5.0)
    writer.close()
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert torch.equal(saved["w"], torch.zeros(1000))
    assert torch.equal(saved["opt"]["state"][0]["buf"], torch.ones(3))
    assert saved["opt"]["param_groups"] == [{"lr": 0.1}]


def test_the_last_of_several_writes_to_one_file_wins(tmp_path: Path) -> None:
    writer = BackgroundWriter()
    for value in range(5):
        writer.save(tmp_path / "best.pt", host_copy({"epoch": torch.tensor(value)}))
        writer.save(tmp_path / "last.pt", host_copy({"epoch": torch.tensor(value)}))
    writer.close()
    for name in ("best.pt", "last.pt"):
        assert int(torch.load(tmp_path / name, weights_only=True)["epoch"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_a_failed_write_is_raised_when_waited_for(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cell directory should be")
    writer = BackgroundWriter()
    writer.save(blocker / "last.pt", {"epoch": 1})
    with pytest.raises(OSError):
        writer.close()
