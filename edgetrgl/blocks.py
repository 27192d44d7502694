"""How a block tells the trainer its residues, and the transport term that follows from them.

TRGL needs, for every block m, the residue r_m: the residual branch's output (after its last
normalisation, before the add). A block can report it in one of three ways, checked in order:

1. it subclasses :class:`ResidualBlock` and implements ``forward_residues(x) -> (out, [r, ...])``
   (a transformer block reports two residues: attention and MLP);
2. its output has the same shape as its input: the residue is ``out - x`` (DESIGN.md: "for a
   module that is not residual ... the transport term is mean((T(x) - x) ** 2)");
3. neither: the block has no transport term (for example a plain downsampling conv).

:func:`run_block` returns which case applied (its third value), and
``Stage.transport_kinds`` reports it per block so the API can say so.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

TransportKind = Literal["residual", "displacement", "none"]


class ResidualBlock(nn.Module):
    """Base class for blocks that report their residual branches' outputs."""

    def forward_residues(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_residues(x)[0]


def run_block(block: nn.Module, x: torch.Tensor, differentiable: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, TransportKind]:
    """Run one block and return ``(out, transport, kind)``.

    ``transport`` is the sum over the block's residues of ``mean(r ** 2)`` (a 0-d tensor), or
    ``None`` when the block has no transport term. With ``differentiable=False`` it is computed for
    logging only: no graph keeps the residues alive (VanGL and e2e must not pay for them).
    """
    if isinstance(block, ResidualBlock) or hasattr(block, "forward_residues"):
        out, residues = block.forward_residues(x)
        if not differentiable:
            residues = [r.detach() for r in residues]
        cost = sum((r.pow(2).mean() for r in residues), torch.zeros((), device=out.device, dtype=torch.float32))
        return out, cost, "residual"
    out = block(x)
    if out.shape == x.shape:
        diff = out - x if differentiable else out.detach() - x.detach()
        return out, diff.pow(2).mean(), "displacement"
    return out, None, "none"
