"""The paper's wide, shallow "K-M ResNet" used for block-wise (one block per module) training.

Stem conv3x3 stride 2 (in -> width) + BN + ReLU: downsampling once up front keeps the wide blocks
affordable. Then ``depth`` two-conv residual blocks; the block at index ``depth // 2`` halves the
resolution and doubles the channels, with a 1x1 conv + BN projection shortcut. That block still
reports its residue, so every block carries a transport term.
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


class KMBlock(ResidualBlock):
    """conv3x3-BN-ReLU-conv3x3-BN residual branch; out = relu(shortcut(x) + r)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward_residues(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        r = residue_tail(self.bn2, self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(self.shortcut(x) + r), [r]


def build_km_resnet(in_channels: int, depth: int, width: int, name: str) -> BlockNet:
    """Build a K-M ResNet with ``depth`` blocks, ``width`` channels before the midpoint, ``2 * width`` after."""
    depth = positive_int(name, "depth", depth)
    width = positive_int(name, "width", width)
    stem = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )
    blocks: list[nn.Module] = []
    channels = width
    for i in range(depth):
        if i == depth // 2:
            blocks.append(KMBlock(channels, 2 * width, stride=2))
            channels = 2 * width
        else:
            blocks.append(KMBlock(channels, channels))
    return BlockNet(stem=stem, blocks=blocks, head_kind="conv", name=name)


@register_model("kmresnet4")
def kmresnet4(in_channels: int, num_classes: int, image_size: int, *, width: int = 256, depth: int = 4) -> BlockNet:
    """K-M ResNet, 4 wide blocks (256 -> 512 channels at the midpoint), stride-2 stem."""
    return build_km_resnet(in_channels, depth, width, "kmresnet4")


@register_model("kmresnet8")
def kmresnet8(in_channels: int, num_classes: int, image_size: int, *, width: int = 256, depth: int = 8) -> BlockNet:
    """K-M ResNet, 8 wide blocks (256 -> 512 channels at the midpoint), stride-2 stem."""
    return build_km_resnet(in_channels, depth, width, "kmresnet8")


@register_model("kmresnet16")
def kmresnet16(in_channels: int, num_classes: int, image_size: int, *, width: int = 256, depth: int = 16) -> BlockNet:
    """K-M ResNet, 16 wide blocks (256 -> 512 channels at the midpoint), stride-2 stem."""
    return build_km_resnet(in_channels, depth, width, "kmresnet16")
