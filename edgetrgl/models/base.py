"""What every model builder returns: a stem and a list of blocks, ready to be split into modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from torch import nn

HeadKind = Literal["auto", "conv", "token"]
HEAD_KINDS = ("auto", "conv", "token")


@dataclass
class BlockNet:
    """A network as edgetrgl sees it.

    Attributes:
        stem: runs once before the first block; it belongs to the first module and has no
            transport term.
        blocks: the blocks, in order. Any split into consecutive modules is valid.
        head_kind: how to read rank-2 features, the one ambiguous case: ``"conv"`` for channels
            first, (C, L) sequences; ``"token"`` for (N, D) token sequences (LayerNorm, mean pool,
            Linear); ``"auto"`` (default): ``conv`` if the network has a ``Conv1d`` layer, else
            ``token``. Other ranks pick their head by shape alone (see :mod:`edgetrgl.heads`).
        name: for reports; default the class name of a subclass, or ``"custom"``.
        head_factory: ``factory(feature_shape, num_classes) -> nn.Module``, your own auxiliary
            head for every module (default: the head that fits each module's output shape).
    """

    stem: nn.Module
    blocks: list[nn.Module]
    head_kind: HeadKind = "auto"
    name: str | None = None
    extra: dict = field(default_factory=dict)
    head_factory: Callable[[tuple[int, ...], int], nn.Module] | None = None

    def __post_init__(self) -> None:
        if len(self.blocks) == 0:
            raise ValueError("BlockNet needs at least one block")
        if self.head_kind not in HEAD_KINDS:
            raise ValueError(f"head_kind must be one of {', '.join(HEAD_KINDS)}; got {self.head_kind!r}")
        if self.name is None:
            self.name = "custom" if type(self) is BlockNet else type(self).__name__
