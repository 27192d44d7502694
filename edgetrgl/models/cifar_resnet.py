"""CIFAR-style ResNet-20/56/110 (He et al., 2016, section 4.2), the paper's deep test bed.

Stem conv3x3 (in -> 16) + BN + ReLU, then three stages of n BasicBlocks at 16/32/64 channels
(n = 3, 9, 18), the first block of stages 2 and 3 with stride 2. Shortcuts are "option A":
subsample and zero-pad channels, so the network has no projection parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgetrgl.blocks import ResidualBlock
from edgetrgl.models._checks import positive_int
from edgetrgl.models.base import BlockNet
from edgetrgl.models.registry import register_model
from edgetrgl.transport import residue_tail


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: keep every other pixel and zero-pad the new channels (parameter-free)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        # Split the padding between both ends, as the original code does (planes // 4 each side).
        extra = out_channels - in_channels
        self.pad_front, self.pad_back = extra // 2, extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


class BasicBlock(ResidualBlock):
    """conv3x3-BN-ReLU-conv3x3-BN residual branch; out = relu(r + shortcut(x))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = ZeroPadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward_residues(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        r = residue_tail(self.bn2, self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(r + self.shortcut(x)), [r]


def build_cifar_resnet(in_channels: int, blocks_per_stage: int, width: int, name: str) -> BlockNet:
    """Build a CIFAR ResNet with ``6 * blocks_per_stage + 2`` layers and base width ``width``."""
    stem = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )
    blocks: list[nn.Module] = []
    channels = width
    for stage in range(3):
        stage_channels = width * 2**stage
        for i in range(blocks_per_stage):
            stride = 2 if (stage > 0 and i == 0) else 1
            blocks.append(BasicBlock(channels, stage_channels, stride))
            channels = stage_channels
    return BlockNet(stem=stem, blocks=blocks, head_kind="conv", name=name)


@register_model("resnet20")
def resnet20(in_channels: int, num_classes: int, image_size: int, *, width: int = 16) -> BlockNet:
    """CIFAR ResNet-20: 9 BasicBlocks at 16/32/64 channels, zero-pad shortcuts (0.27M params)."""
    return build_cifar_resnet(in_channels, 3, positive_int("resnet20", "width", width), "resnet20")


@register_model("resnet56")
def resnet56(in_channels: int, num_classes: int, image_size: int, *, width: int = 16) -> BlockNet:
    """CIFAR ResNet-56: 27 BasicBlocks at 16/32/64 channels, zero-pad shortcuts (0.85M params)."""
    return build_cifar_resnet(in_channels, 9, positive_int("resnet56", "width", width), "resnet56")


@register_model("resnet110")
def resnet110(in_channels: int, num_classes: int, image_size: int, *, width: int = 16) -> BlockNet:
    """CIFAR ResNet-110: 54 BasicBlocks at 16/32/64 channels, zero-pad shortcuts (1.7M params)."""
    return build_cifar_resnet(in_channels, 18, positive_int("resnet110", "width", width), "resnet110")
