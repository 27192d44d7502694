"""What every model builder returns: a stem and a list of blocks, ready to be split into modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

HeadKind = Literal["conv", "token"]


@dataclass
class BlockNet:
    """A network as edgetrgl sees it.

    Attributes:
        stem: runs once before the first block; it belongs to the first module and has no
            transport term.
        blocks: the blocks, in order. Any split into consecutive modules is valid.
        head_kind: ``"conv"`` for NCHW feature maps (the DGL "1CNN" auxiliary head) or ``"token"``
            for (batch, tokens, dim) sequences (LayerNorm, mean pool, Linear).
        name: registry name, for reports.
    """

    stem: nn.Module
    blocks: list[nn.Module]
    head_kind: HeadKind = "conv"
    name: str = "custom"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.blocks) == 0:
            raise ValueError("BlockNet needs at least one block")
        if self.head_kind not in ("conv", "token"):
            raise ValueError(f"head_kind must be 'conv' or 'token', got {self.head_kind!r}")
