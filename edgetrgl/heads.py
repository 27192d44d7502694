"""Auxiliary classifiers: one per module, built from the shape of that module's output.

The default head follows the rank of the features a module outputs (batch dimension left out):

    (D,)        a vector: LayerNorm, Linear                           (an MLP's blocks)
    (C, L)      channels first: Conv1d 3, ReLU, AvgPool(2), BN, Linear (1CNN in one dimension)
    (N, D)      tokens, channels last: LayerNorm, mean over tokens, Linear (transformers)
    (C, H, W)   channels first: DGL's "1CNN"                          (conv nets)
    (C, ...)    more positions: mean over positions, Linear

Rank 2 is ambiguous: ``(C, L)`` sequences and ``(N, D)`` tokens look alike. The network's
``head_kind`` decides (see :func:`resolve_head_kind`).

Style ``trgl`` (``--head trgl``) is the TRGL authors' own 1CNN for ``(C, H, W)`` features
(:class:`TRGLConvHead`): a fixed ``AvgPool2d`` kernel instead of the adaptive 2x2 pool, so the linear
layer sees C x 36 or C x 9 values on STL-10 rather than C x 4. Other ranks keep the default head.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from edgetrgl.models.base import HeadKind

HeadFactory = Callable[[tuple[int, ...], int], nn.Module]
"""``factory(feature_shape, num_classes) -> head``: ``feature_shape`` leaves out the batch."""


def one_cnn(channels: int, pool: nn.Module, cells: int, num_classes: int) -> nn.Sequential:
    """The "1CNN" body both conv heads share: Conv3x3(C->C, no bias), ReLU, ``pool`` (to ``cells``
    positions), BN, Flatten, Linear(C * cells)."""
    return nn.Sequential(nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False), nn.ReLU(inplace=True),
                         pool, nn.BatchNorm2d(channels), nn.Flatten(), nn.Linear(channels * cells, num_classes))


class ConvHead(nn.Module):
    """DGL's "1CNN" auxiliary head: Conv3x3(C->C), ReLU, AdaptiveAvgPool(2x2), BN, Flatten, Linear."""

    def __init__(self, channels: int, num_classes: int, pool: int = 2) -> None:
        super().__init__()
        self.body = one_cnn(channels, nn.AdaptiveAvgPool2d(pool), pool * pool, num_classes)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.body(x_BCHW)


def trgl_pool_kernel(side: int) -> int:
    """The TRGL authors' ``apc``, the AvgPool2d kernel of their 1CNN head, for a feature map side.

    Their scripts (skander-karkar/Block-wise) set ``apc`` by hand per experiment: ResNet-110 on
    STL-10 (96 px) pools maps of side 96 and 48 with 16 and maps of side 24 with 8 (6x6, 3x3, 3x3);
    ResNet-101/152 pools sides 16 and 8 with 8 and side 4 with 4 (Tiny ImageNet, CIFAR-100). This
    rule gives every one of those values: 16 for sides of 48 and more, 8 below, the whole map below 8.
    """
    return min(side, 16 if side >= 48 else 8)


class TRGLConvHead(nn.Module):
    """The TRGL authors' "1CNN" (``create_classifier('1CNN', ..., apc)``): Conv3x3(C->C, no bias),
    ReLU, AvgPool2d(apc) (kernel = stride = apc, per side from :func:`trgl_pool_kernel`), BN, Flatten,
    Linear(C * (H // apc_h) * (W // apc_w))."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int) -> None:
        super().__init__()
        kernel = (trgl_pool_kernel(height), trgl_pool_kernel(width))
        self.pooled = (height // kernel[0], width // kernel[1])
        self.body = one_cnn(channels, nn.AvgPool2d(kernel), self.pooled[0] * self.pooled[1], num_classes)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.body(x_BCHW)


class SequenceHead(nn.Module):
    """1CNN for (C, L) sequences: Conv1d 3 (C->C), ReLU, AdaptiveAvgPool1d(2), BN, Flatten, Linear."""

    def __init__(self, channels: int, num_classes: int, pool: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool1d(pool),
            nn.BatchNorm1d(channels),
            nn.Flatten(),
            nn.Linear(channels * pool, num_classes),
        )

    def forward(self, x_BCL: torch.Tensor) -> torch.Tensor:
        return self.body(x_BCL)


class TokenHead(nn.Module):
    """Transformer head: LayerNorm, mean over tokens, Linear."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x_BND: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x_BND).mean(dim=1))


class VectorHead(nn.Module):
    """Head for flat (D,) features: LayerNorm (no batch statistics, so any batch size), Linear."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x_BD))


class LinearHead(nn.Module):
    """Global average pool and Linear: the light head, for users who want the smallest one.

    ``channels_last`` pools over dim 1 (tokens); otherwise over every dim after the channels.
    """

    def __init__(self, channels: int, num_classes: int, channels_last: bool = False) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2 or self.channels_last:
            x = x.mean(dim=1) if self.channels_last else x.flatten(2).mean(dim=2)
        return self.fc(x)


def resolve_head_kind(kind: HeadKind, net_modules: list[nn.Module]) -> HeadKind:
    """Turn ``"auto"`` into ``"conv"`` or ``"token"``; other kinds pass through.

    ``auto`` only matters for rank-2 features: they are read as (C, L) sequences (channels first,
    ``"conv"``) when the network has a ``Conv1d`` layer, else as (N, D) tokens (``"token"``).
    """
    if kind != "auto":
        return kind
    has_conv1d = any(isinstance(m, nn.Conv1d) for net in net_modules for m in net.modules())
    return "conv" if has_conv1d else "token"


def make_head(kind: HeadKind, feature_shape: torch.Size | tuple[int, ...], num_classes: int, style: str = "auto") -> nn.Module:
    """Build the auxiliary classifier for a module whose output has ``feature_shape`` (without batch).

    Args:
        kind: ``"conv"`` (channels first: (C, L), (C, H, W)) or ``"token"`` ((N, D)); it only
            matters for rank-2 features (resolve ``"auto"`` with :func:`resolve_head_kind` first).
        feature_shape: the module's output shape for one sample.
        num_classes: classifier outputs.
        style: ``"auto"`` (the head for the rank, see the module docstring), ``"linear"``
            (average pool and Linear) or ``"trgl"`` (the TRGL authors' 1CNN for ``(C, H, W)``
            features; the ``auto`` head for other ranks).

    Raises:
        ValueError: scalar features (rank 0), or an unresolved ``"auto"`` kind.
    """
    shape = tuple(feature_shape)
    if len(shape) == 0:
        raise ValueError("a module that outputs one number per sample cannot have a classifier head")
    if kind not in ("conv", "token"):
        raise ValueError(f"head kind must be 'conv' or 'token' here, got {kind!r}")
    tokens = kind == "token" and len(shape) == 2
    if style == "linear":
        return LinearHead(shape[-1] if tokens else shape[0], num_classes, channels_last=tokens)
    if len(shape) == 1:
        return VectorHead(shape[0], num_classes)
    if tokens:
        return TokenHead(shape[-1], num_classes)
    if len(shape) == 2:
        return SequenceHead(shape[0], num_classes)
    if len(shape) == 3:
        return TRGLConvHead(*shape, num_classes) if style == "trgl" else ConvHead(shape[0], num_classes)
    return LinearHead(shape[0], num_classes)
