"""Batched, seeded augmentation and normalisation with plain tensor ops.

Both the in-memory and the file-backed loaders go through these two functions, so every dataset
sees the same crop/flip semantics (torchvision's ``RandomCrop(padding, fill=0)`` and
``RandomHorizontalFlip(0.5)``) and the same normalisation.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_crop_flip(
    x_BCHW: torch.Tensor, *, padding: int, hflip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Randomly crop each image after zero padding, and flip half of them if ``hflip``.

    Args:
        x_BCHW: images, any dtype (uint8 raw pixels or float), shape (B, C, H, W).
        padding: zero padding on every side before cropping back to (H, W); 0 disables the crop.
        hflip: flip each image left-right with probability 1/2.
        generator: source of all random draws, so a fixed seed replays the same augmentation.

    Returns:
        A new tensor of the same shape and dtype.
    """
    B, C, H, W = x_BCHW.shape
    out = x_BCHW
    if padding > 0:
        padded = F.pad(x_BCHW, (padding, padding, padding, padding))  # zeros, as torchvision's fill=0
        top = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        left = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        # One gather for the whole batch: per-image row and column index grids.
        rows = (top[:, None] + torch.arange(H))[:, None, :, None]  # (B, 1, H, 1)
        cols = (left[:, None] + torch.arange(W))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(B)[:, None, None, None]
        chans = torch.arange(C)[None, :, None, None]
        out = padded[batch, chans, rows, cols]
    if hflip:
        flip = torch.rand(B, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out


def normalise(x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """Convert images to float32 and normalise per channel.

    Args:
        x: uint8 pixels 0..255 (scaled to 0..1 first) or float pixels already on the 0..1 scale;
            shape (B, C, H, W) or (C, H, W).
        mean: per-channel means on the 0..1 scale (length C).
        std: per-channel standard deviations on the 0..1 scale (length C).

    Returns:
        float32 tensor of the same shape, ``(x - mean) / std``.
    """
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
    shape = (-1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(shape)
    s = torch.tensor(std, dtype=torch.float32).view(shape)
    return (x - m) / s


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images to ``size`` x ``size`` (bilinear, antialiased), staying uint8."""
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                      align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)
