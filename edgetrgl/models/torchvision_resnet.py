"""torchvision's ResNet-18 and ResNet-50, adapted to small images and exposed block by block.

The ImageNet stem (7x7 stride-2 conv + max-pool) would shrink a 32x32 image to 8x8 before the
first block, so it is replaced by conv3x3 stride 1 (in -> 64) + BN + ReLU. The blocks are
torchvision's own BasicBlock / Bottleneck modules (built with ``weights=None``: no download),
wrapped so they report their residue; the wrapper computes exactly what the block's forward does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgetrgl.blocks import ResidualBlock
from edgetrgl.models.base import BlockNet
from edgetrgl.models.registry import register_model
from edgetrgl.transport import residue_tail


class TorchvisionResidual(ResidualBlock):
    """Adapter around a torchvision BasicBlock or Bottleneck that also returns its residue.

    Residue r is the residual branch after its last BN (bn2 for BasicBlock, bn3 for Bottleneck);
    out = relu(r + identity), identity = downsample(x) when the block has one.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.is_bottleneck = hasattr(block, "conv3")

    def forward_residues(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # F.relu, not the block's in-place ReLU: an in-place op on a module's output hides that
        # module from MemTracker's backward hooks (a KeyError when measuring memory)
        b = self.block
        r = F.relu(b.bn1(b.conv1(x)))
        if self.is_bottleneck:
            r = residue_tail(b.bn3, b.conv3(F.relu(b.bn2(b.conv2(r)))))
        else:
            r = residue_tail(b.bn2, b.conv2(r))
        identity = b.downsample(x) if b.downsample is not None else x
        return F.relu(r + identity), [r]


def build_torchvision_resnet(arch: str, in_channels: int) -> BlockNet:
    """Build torchvision ``arch`` (e.g. "resnet18") with a small-image stem, one block per residual block."""
    # Imported here so that listing models does not pay for importing torchvision.
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    stem = nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
    )
    blocks: list[nn.Module] = [
        TorchvisionResidual(block) for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for block in layer
    ]
    return BlockNet(stem=stem, blocks=blocks, head_kind="conv", name=arch)


@register_model("resnet18")
def resnet18(in_channels: int, num_classes: int, image_size: int) -> BlockNet:
    """torchvision ResNet-18, 8 BasicBlocks (64-512 ch), conv3x3 stride-1 stem for small images."""
    return build_torchvision_resnet("resnet18", in_channels)


@register_model("resnet50")
def resnet50(in_channels: int, num_classes: int, image_size: int) -> BlockNet:
    """torchvision ResNet-50, 16 Bottlenecks (256-2048 ch), conv3x3 stride-1 stem for small images."""
    return build_torchvision_resnet("resnet50", in_channels)
