"""Activation checkpointing inside a module (``--checkpoint-blocks``).

Each block (and the stem) runs under ``torch.utils.checkpoint`` (non-reentrant): between forward
and backward only the blocks' inputs stay alive, and each block's activations, the residues of the
transport term included, are recomputed when its backward needs them. A module's peak is then its
parameters, gradients and optimizer state, the blocks' inputs and about one block's activations.

The recomputation runs the block's forward again. In training mode that would move BatchNorm's
running statistics a second time per step, so every recomputation puts the block's buffers back
as they were; the RNG state is restored by ``checkpoint`` itself. Gradients equal the plain
step's (tests/test_transport.py).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from edgetrgl.blocks import run_block
from edgetrgl.transport import Weight, buffers_kept


def checkpoint_block(block: nn.Module, x: torch.Tensor, differentiable: bool,
                     transport_weight: Weight | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``run_block`` under activation checkpointing; returns ``(out, transport)`` (0 if none)."""

    def run(x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the transport injection is set up inside: the recomputation may run on autograd's thread
        out, cost, _ = run_block(block, x_in, differentiable, transport_weight)
        return out, cost if cost is not None else torch.zeros((), device=out.device, dtype=torch.float32)

    return _checkpointed(run, block, x)


def checkpoint_stem(stem: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``stem(x)`` under activation checkpointing."""
    return _checkpointed(stem, stem, x)


def _checkpointed(fn: Callable, module: nn.Module, x: torch.Tensor):
    calls = 0

    def once_then_recompute(x_in: torch.Tensor):
        nonlocal calls
        calls += 1
        if calls == 1:
            return fn(x_in)
        with buffers_kept(module):  # the recomputation must not move running statistics again
            return fn(x_in)

    return checkpoint(once_then_recompute, x, use_reentrant=False)
