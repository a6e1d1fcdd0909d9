"""``lpft models [SOURCE]``: the sources, and what each offers."""

from __future__ import annotations

from lpft.cli.main import main


def test_without_source_every_source_is_listed_with_an_example(capsys) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    sources = [line.split()[0] for line in lines[:6]]
    assert sources == ["builtin", "file", "hf", "openclip", "timm", "torchvision"]
    assert "torchvision:resnet50" in lines[5]


def test_each_source_lists_its_models(capsys) -> None:
    assert main(["models", "torchvision", "--filter", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "torchvision:resnet50  weights: IMAGENET1K_V1, IMAGENET1K_V2 (default)" in out
    assert main(["models", "openclip", "--filter", "ViT-B-16"]) == 0
    assert "openclip:ViT-B-16/openai" in capsys.readouterr().out.splitlines()
    assert main(["models", "timm", "--filter", "resnet18"]) == 0
    assert "timm:resnet18.a1_in1k" in capsys.readouterr().out.splitlines()
    assert main(["models", "builtin"]) == 0
    assert "builtin:glyph-resnet" in capsys.readouterr().out.splitlines()


def test_unknown_source_is_one_line(capsys) -> None:
    assert main(["models", "hub"]) == 2
    assert "unknown backbone source 'hub'" in capsys.readouterr().err
