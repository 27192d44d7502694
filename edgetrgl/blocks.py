"""How a block tells the trainer its residues, and the transport term that follows from them.

TRGL needs, for every block m, the residue r_m: the residual branch's output (after its last
normalisation, before the add). A block can report it in one of three ways, checked in order:

1. it subclasses :class:`ResidualBlock` and implements ``forward_residues(x) -> (out, [r, ...])``
   (a transformer block reports two residues: attention and MLP). A block that computes each
   residue as ``residue_tail(last_layer, h)`` gets its transport gradient at no memory cost
   (:mod:`edgetrgl.transport`); any other residue falls back to the plain formulation;
2. its output has the same shape as its input: the residue is ``out - x`` (the paper's rule for
   a module that is not residual: the transport term is mean((T(x) - x) ** 2));
3. neither: the block has no transport term (for example a plain downsampling conv).

:func:`run_block` returns which case applied (its third value), and
``Stage.transport_kinds`` reports it per block so the API can say so.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch
from torch import nn

from edgetrgl.transport import Weight, inject_transport, logged_squared_mean, squared_mean, tap_displacement

TransportKind = Literal["residual", "displacement", "none"]


class ResidualBlock(nn.Module):
    """Base class for blocks that report their residual branches' outputs."""

    def forward_residues(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_residues(x)[0]


def run_block(block: nn.Module, x: torch.Tensor, differentiable: bool = True,
              transport_weight: Weight | None = None) -> tuple[torch.Tensor, torch.Tensor | None, TransportKind]:
    """Run one block and return ``(out, transport, kind)``.

    ``transport`` is the sum over the block's residues of ``mean(r ** 2)`` (a 0-d fp32 tensor), or
    ``None`` when the block has no transport term. With ``differentiable=False`` it is computed for
    logging only: no graph keeps the residues alive (VanGL and e2e must not pay for them).

    With ``transport_weight`` (and ``differentiable``) the gradient of ``transport_weight *
    transport`` is injected in backward (see :mod:`edgetrgl.transport`) and ``transport`` is
    detached, except for the residues of a block that does not compute them through
    :func:`residue_tail`: those stay differentiable (the plain formulation), for the loss to add.
    """
    fused = differentiable and transport_weight is not None and torch.is_grad_enabled()
    if isinstance(block, ResidualBlock) or hasattr(block, "forward_residues"):
        with inject_transport(transport_weight) if fused else nullcontext() as injection:
            out, residues = block.forward_residues(x)
        tapped = injection.tapped if fused else []
        cost = torch.zeros((), device=out.device, dtype=torch.float32)
        for r in residues:
            if not differentiable or any(r is t for t in tapped):
                cost = cost + logged_squared_mean(r)
            else:
                cost = cost + squared_mean(r)  # the plain formulation: the loss differentiates it
        return out, cost, "residual"
    out = block(x)
    if out.shape == x.shape:
        if fused:
            out = tap_displacement(out, x, transport_weight)
        if differentiable and not fused:
            return out, squared_mean(out.float() - x.float()), "displacement"
        return out, logged_squared_mean(out.detach().float() - x.detach().float()), "displacement"
    return out, None, "none"
