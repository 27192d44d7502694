"""VGG-11 and VGG-19 with batch norm (Simonyan & Zisserman, 2015), one conv layer per block.

Each block is Conv3x3 + BN + ReLU with the following max-pool folded into it. The blocks are plain
modules, not residual: ``run_block`` gives a block whose input and output shapes match the
displacement transport term mean((T(x) - x) ** 2), and no term to a block that changes shape.
The stem is the first conv layer (and its pool, if one follows). The fully connected classifier
is left out: heads are built elsewhere from the last block's output.
"""

from __future__ import annotations

from torch import nn

from edgetrgl.models._checks import positive_float
from edgetrgl.models.base import BlockNet
from edgetrgl.models.registry import register_model

# Standard configurations ("A" and "E"): output channels of each conv, "M" for a 2x2 max-pool.
VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11_bn": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg19_bn": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _conv_bn_relu(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),  # BN follows: bias is redundant
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def build_vgg(config: list[int | str], in_channels: int, image_size: int, width_mult: float, name: str) -> BlockNet:
    """Build a VGG-BN from ``config``, channels scaled by ``width_mult``, as stem + one block per conv."""
    width_mult = positive_float(name, "width_mult", width_mult)
    layers: list[nn.Sequential] = []
    channels, size = in_channels, image_size
    for i, item in enumerate(config):
        if item == "M":
            continue  # folded into the conv before it
        out_channels = max(1, round(int(item) * width_mult))
        # Skip a pool once the map is already below 2x2, so 28x28 and 16x16 inputs still work.
        pool = i + 1 < len(config) and config[i + 1] == "M" and size >= 2
        layers.append(_conv_bn_relu(channels, out_channels, pool))
        channels = out_channels
        size = size // 2 if pool else size
    return BlockNet(stem=layers[0], blocks=list(layers[1:]), head_kind="conv", name=name)


@register_model("vgg11_bn")
def vgg11_bn(in_channels: int, num_classes: int, image_size: int, *, width_mult: float = 1.0) -> BlockNet:
    """VGG-11 with batch norm: stem conv + 7 conv blocks, max-pools folded in (no FC layers)."""
    return build_vgg(VGG_CONFIGS["vgg11_bn"], in_channels, image_size, width_mult, "vgg11_bn")


@register_model("vgg19_bn")
def vgg19_bn(in_channels: int, num_classes: int, image_size: int, *, width_mult: float = 1.0) -> BlockNet:
    """VGG-19 with batch norm: stem conv + 15 conv blocks, max-pools folded in (no FC layers)."""
    return build_vgg(VGG_CONFIGS["vgg19_bn"], in_channels, image_size, width_mult, "vgg19_bn")
