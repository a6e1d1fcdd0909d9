"""``lpft theory`` through the real entry point: files written, JSON content, one-line errors.

The parser is built with the theory subcommand only, so these tests neither import the other
subcommands (and torch) nor depend on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpft.cli.main import main

SMALL_ARGS = ["--d", "16", "--k", "2", "--n", "6", "--eps", "0.05", "--t-max", "30"]


def test_theory_writes_plots_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["theory", "--out", str(tmp_path), *SMALL_ARGS, "--sweeps", "eps", "n"]) == 0
    for name in ("loss_curves.png", "distortion.png", "sweeps.png", "theory.json"):
        assert (tmp_path / name).stat().st_size > 0
    printed = capsys.readouterr().out
    for word in ("LP-FT", "OOD loss", "Thm 3.1 bound"):
        assert word in printed
    document = json.loads((tmp_path / "theory.json").read_text())
    assert {"config", "table", "theorem_3_1", "integration", "figures"} <= set(document)
    assert [row["method"] for row in document["table"]] == ["LP", "FT", "LP-FT"]
    figures = document["figures"]
    assert set(figures["loss_curves"]) == {"LP", "FT", "LP-FT", "ft_bound"}
    assert set(figures["sweeps"]) == {"eps", "n"}
    curve = figures["loss_curves"]["FT"]
    assert len(curve["times"]) == len(curve["ood_loss"]) == len(curve["id_loss"])
    ft_row = document["table"][1]
    assert ft_row["ood_loss"] >= ft_row["thm31_bound"]


def test_json_flag_prints_the_document(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["theory", "--out", str(tmp_path), *SMALL_ARGS, "--sweeps", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["figures"]["sweeps"] == {}
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "distortion.png",
        "loss_curves.png",
        "theory.json",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "5", "--n", "5"], "n must satisfy k < n < d"),
        (["--d", "20", "--n", "20"], "n must satisfy k < n < d, i.e. 6 <= n <= 19"),
        (["--eps", "1.5"], "eps must satisfy 0 <= eps < 1"),
        (["--id-dim", "2"], "id_dim must satisfy k <= id_dim <= d"),
        (["--t-max", "0"], "t_max must be"),
    ],
)
def test_bad_arguments_give_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    assert main(["theory", "--out", str(tmp_path / "out"), *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("lpft: error: ")
    assert message in error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()
