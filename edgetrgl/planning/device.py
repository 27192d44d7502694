"""Which device a run computes on, and whether its memory is its own or shared with the CPU."""

from __future__ import annotations

from typing import Literal

import torch

from edgetrgl.errors import UserError

MemoryKind = Literal["dedicated", "shared"]


def resolve_device(name: str, cuda_available: bool | None = None) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a user error.
    ``cuda_available``: what the caller measured (default: ask torch now)."""
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if name == "auto":
        return torch.device("cuda" if cuda else "cpu")
    if name == "cuda" and not cuda:
        raise UserError("--device cuda was requested but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(name)


def memory_kind(device: torch.device, integrated: bool | None = None) -> MemoryKind:
    """``dedicated`` for a discrete GPU; ``shared`` for the CPU and for an integrated GPU (a Jetson),
    whose memory is the same DRAM the process, its caches and the OS live in.

    ``torch.cuda.is_available()`` says nothing about this (it is true on a Jetson); the device's own
    ``is_integrated`` property does (``integrated``: what the caller measured; default: ask now).
    """
    if device.type != "cuda":
        return "shared"
    if integrated is None:
        integrated = torch.cuda.get_device_properties(device).is_integrated
    return "shared" if integrated else "dedicated"
