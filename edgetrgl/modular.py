"""Split a :class:`BlockNet` into K modules, each with an auxiliary head.

A module ("stage" in code, to avoid clashing with ``nn.Module.modules()``) is a run of consecutive
blocks; the first one also owns the stem. No gradient crosses a module boundary: the training
loops detach each module's output before the next one sees it.
"""

from __future__ import annotations

import torch
from torch import nn

from edgetrgl.blocks import TransportKind, run_block
from edgetrgl.errors import UserError
from edgetrgl.heads import HeadFactory, make_head, resolve_head_kind
from edgetrgl.models.base import BlockNet


def split_blocks(num_blocks: int, num_modules: int, boundaries: list[int] | None = None) -> list[tuple[int, int]]:
    """Partition ``range(num_blocks)`` into consecutive ``(start, stop)`` ranges.

    Args:
        num_blocks: blocks in the network.
        num_modules: K. Ignored when ``boundaries`` is given.
        boundaries: the first block index of modules 2..K, strictly increasing, in (0, num_blocks).

    Returns:
        K ranges covering every block once; equal depth (the first modules take the remainder)
        unless boundaries are given.

    Raises:
        UserError: if K exceeds the number of blocks or the boundaries are not valid.
    """
    if boundaries is not None:
        bounds = list(boundaries)
        if any(b <= a for a, b in zip([0] + bounds, bounds + [num_blocks])):
            raise UserError(f"module boundaries {bounds} must be strictly increasing block indices in 1..{num_blocks - 1}")
        edges = [0] + bounds + [num_blocks]
        return list(zip(edges[:-1], edges[1:]))
    if num_modules < 1:
        raise UserError(f"--modules must be at least 1, got {num_modules}")
    if num_modules > num_blocks:
        raise UserError(f"--modules {num_modules} is larger than the model's {num_blocks} blocks")
    base, extra = divmod(num_blocks, num_modules)
    ranges, start = [], 0
    for k in range(num_modules):
        stop = start + base + (1 if k < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


class Stage(nn.Module):
    """One TRGL module T_k: optional stem, then blocks. Its forward returns the transport cost too."""

    def __init__(self, blocks: list[nn.Module], stem: nn.Module | None = None) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x

    def forward_transport(self, x: torch.Tensor, differentiable: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(out, transport)``: transport is the sum over blocks of mean(r ** 2) (0 if none).

        With ``differentiable=False`` the transport is a detached figure for logging only.
        """
        if self.stem is not None:
            x = self.stem(x)
        total = torch.zeros((), device=x.device, dtype=torch.float32)
        for block in self.blocks:
            x, cost, _ = run_block(block, x, differentiable)
            if cost is not None:
                total = total + cost
        return x, total

    @torch.no_grad()
    def transport_kinds(self, x: torch.Tensor) -> list[TransportKind]:
        """Which transport term each block has (``residual``, ``displacement`` or ``none``)."""
        if self.stem is not None:
            x = self.stem(x)
        kinds = []
        for block in self.blocks:
            x, _, kind = run_block(block, x)
            kinds.append(kind)
        return kinds


class ModularNet(nn.Module):
    """K stages and their K auxiliary heads.

    Attributes:
        stages: the modules T_1..T_K.
        heads: the auxiliary classifiers F_1..F_K.
        block_ranges: which blocks of the original BlockNet each stage holds.
    """

    def __init__(self, stages: list[Stage], heads: list[nn.Module], block_ranges: list[tuple[int, int]], head_kind: str, name: str) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)
        self.block_ranges = block_ranges
        self.head_kind = head_kind
        self.name = name

    @property
    def num_modules(self) -> int:
        return len(self.stages)

    def forward(self, x: torch.Tensor, exit_at: int | None = None) -> torch.Tensor:
        """Logits of head ``exit_at`` (0-based; default: the last module)."""
        k_exit = self.num_modules - 1 if exit_at is None else exit_at
        for k in range(k_exit + 1):
            x = self.stages[k](x)
        return self.heads[k_exit](x)


def build_modular(
    net: BlockNet,
    num_modules: int,
    num_classes: int,
    sample_input: torch.Tensor,
    boundaries: list[int] | None = None,
    head_style: str = "auto",
    head_factory: HeadFactory | None = None,
) -> ModularNet:
    """Split ``net`` into modules and attach a head to each.

    Args:
        net: the model (stem + blocks).
        num_modules: K (ignored if ``boundaries`` given).
        num_classes: classes for the heads.
        sample_input: one small batch (e.g. ``(2, C, H, W)`` images, ``(2, D)`` vectors) used to find
            each module's output shape.
        boundaries: explicit first block index of modules 2..K.
        head_style: see :func:`make_head`.
        head_factory: ``factory(feature_shape, num_classes) -> nn.Module`` for every module's head;
            default ``net.head_factory``, else :func:`make_head` for the module's output shape.
    """
    ranges = split_blocks(len(net.blocks), num_modules, boundaries)
    stages = [Stage(net.blocks[a:b], stem=net.stem if k == 0 else None) for k, (a, b) in enumerate(ranges)]
    factory = head_factory or net.head_factory
    kind = resolve_head_kind(net.head_kind, [net.stem, *net.blocks])
    heads = []
    x = sample_input
    with torch.no_grad():
        for stage in stages:
            was_training = stage.training
            stage.eval()  # shape probing must not move BatchNorm running statistics
            x = stage(x)
            stage.train(was_training)
            shape = tuple(x.shape[1:])
            heads.append(factory(shape, num_classes) if factory else make_head(kind, shape, num_classes, head_style))
    return ModularNet(stages, heads, ranges, kind, net.name)


def orthogonal_init(model: nn.Module, gain: float) -> None:
    """Orthogonal init of conv and linear weights (the paper's choice, gain 0.1 or 0.05); zero biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.orthogonal_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
