"""GlyphResNet: the small CIFAR-style ResNet lpft pretrains and ships for the offline benchmark."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lpft.models.backbone import Backbone, InputSpec


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class GlyphResNet(Backbone):
    """Stem + three stages of basic blocks + global average pooling.

    Sized for the 8x8 UCI glyph format: about 0.7M parameters (2.8 MB) with the default widths,
    stage resolutions 8, 4 and 2.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128),
        blocks_per_stage: int = 2,
        input_size: int = 8,
    ) -> None:
        super().__init__()
        self.input_spec = InputSpec(size=input_size, channels=1, mean=(0.25,), std=(0.35,))
        self.feature_dim = widths[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        stages = []
        in_channels = widths[0]
        for index, width in enumerate(widths):
            layers = [BasicBlock(in_channels, width, 1 if index == 0 else 2)]
            layers += [BasicBlock(width, width, 1) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        for stage in self.stages:
            out = stage(out)
        return out.mean(dim=(2, 3))

    def embedding_parameters(self) -> list[str]:
        return [f"stem.{name}" for name, _ in self.stem.named_parameters()]

    def blocks(self) -> dict[str, nn.Module]:
        named = {"stem": self.stem}
        named.update({f"stage{i + 1}": stage for i, stage in enumerate(self.stages)})
        return named
