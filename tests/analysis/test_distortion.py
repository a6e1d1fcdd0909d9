"""Feature distortion: zero for an unchanged network, exact for a known perturbation."""

from __future__ import annotations

import copy

import torch

from lpft.analysis.distortion import distortion, feature_change, linear_cka
from lpft.models.glyph_resnet import GlyphResNet
from lpft.training.features import forward_split
from lpft.training.loaders import TensorImageDataset, eval_loader

CPU = torch.device("cpu")


def network_and_inputs() -> tuple[GlyphResNet, TensorImageDataset]:
    torch.manual_seed(0)
    network = GlyphResNet(widths=(8, 16, 16), blocks_per_stage=1).eval()
    images = torch.randn(40, 1, 8, 8)
    return network, TensorImageDataset(images, torch.zeros(40, dtype=torch.long))


def outputs(network: GlyphResNet, data: TensorImageDataset):
    return forward_split(network, eval_loader(data, 16, 0), CPU, with_blocks=True)


def test_unchanged_backbone_has_zero_distortion_and_unit_cka() -> None:
    network, data = network_and_inputs()
    result = distortion(outputs(network, data), outputs(copy.deepcopy(network), data))
    assert result["penultimate"]["l2"] == 0.0 and result["penultimate"]["relative"] == 0.0
    assert abs(result["penultimate"]["cka"] - 1.0) < 1e-12
    for block in result["blocks"].values():
        assert block["l2"] == 0.0 and abs(block["cka"] - 1.0) < 1e-12


def test_scaling_the_last_stage_matches_a_hand_computation() -> None:
    network, data = network_and_inputs()
    before = outputs(network, data)
    scaled = copy.deepcopy(network)
    last = scaled.stages[-1]
    original_forward = last.forward
    last.forward = lambda x: 1.5 * original_forward(x)
    after = outputs(scaled, data)
    result = distortion(before, after)

    norms = torch.linalg.vector_norm(before.features.double(), dim=1)
    expected_l2 = float((0.5 * norms).mean())
    assert abs(result["penultimate"]["l2"] - expected_l2) < 1e-6
    assert abs(result["penultimate"]["relative"] - 0.5) < 1e-6
    assert abs(result["penultimate"]["cka"] - 1.0) < 1e-9  # CKA ignores isotropic scaling
    assert result["blocks"]["stem"]["l2"] == 0.0
    assert result["blocks"]["stage2"]["l2"] == 0.0
    assert abs(result["blocks"]["stage3"]["relative"] - 0.5) < 1e-6


def test_cka_of_unrelated_features_is_low_and_symmetric() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(500, 20, generator=generator)
    y = torch.randn(500, 30, generator=generator)
    assert linear_cka(x, y) < 0.1
    assert abs(linear_cka(x, y) - linear_cka(y, x)) < 1e-12
    rotation = torch.linalg.qr(torch.randn(20, 20, generator=generator)).Q
    assert abs(linear_cka(x, 3.0 * x @ rotation) - 1.0) < 1e-9


def test_feature_change_of_a_known_shift() -> None:
    before = torch.ones(10, 4)
    after = before + torch.tensor([3.0, 4.0, 0.0, 0.0])
    change = feature_change(before, after)
    assert abs(change["l2"] - 5.0) < 1e-12
    assert abs(change["relative"] - 5.0 / 2.0) < 1e-12
