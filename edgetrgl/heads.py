"""Auxiliary classifiers: one per module, built from the shape of that module's output."""

from __future__ import annotations

import torch
from torch import nn

from edgetrgl.models.base import HeadKind


class ConvHead(nn.Module):
    """DGL's "1CNN" auxiliary head: Conv3x3(C->C), ReLU, AdaptiveAvgPool(2x2), BN, Flatten, Linear."""

    def __init__(self, channels: int, num_classes: int, pool: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(pool),
            nn.BatchNorm2d(channels),
            nn.Flatten(),
            nn.Linear(channels * pool * pool, num_classes),
        )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.body(x_BCHW)


class TokenHead(nn.Module):
    """Transformer head: LayerNorm, mean over tokens, Linear."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x_BND: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x_BND).mean(dim=1))


class LinearHead(nn.Module):
    """Global average pool and Linear: the light head, for users who want the smallest one."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3)) if x.dim() == 4 else x.mean(dim=1)
        return self.fc(pooled)


def make_head(kind: HeadKind, feature_shape: torch.Size | tuple[int, ...], num_classes: int, style: str = "auto") -> nn.Module:
    """Build the auxiliary classifier for a module whose output has ``feature_shape`` (without batch).

    Args:
        kind: ``"conv"`` (C, H, W features) or ``"token"`` (N, D features).
        feature_shape: the module's output shape for one sample.
        num_classes: classifier outputs.
        style: ``"auto"`` (1CNN for conv nets, LayerNorm+pool+Linear for tokens) or ``"linear"``.
    """
    if style == "linear":
        return LinearHead(feature_shape[0] if kind == "conv" else feature_shape[-1], num_classes)
    if kind == "conv":
        if len(feature_shape) != 3:
            raise ValueError(f"conv head expects (C, H, W) features, got {tuple(feature_shape)}")
        return ConvHead(feature_shape[0], num_classes)
    if len(feature_shape) != 2:
        raise ValueError(f"token head expects (N, D) features, got {tuple(feature_shape)}")
    return TokenHead(feature_shape[-1], num_classes)
