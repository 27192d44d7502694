"""A lower bound on the memory of any plan, computed in well under a second, before any search.

Whatever the planner chooses (micro-batch, checkpointing, precision), each module being trained
holds at least: its weights, their gradients and the optimizer's state (fp32 copies: mixed precision
keeps fp32 weights; SGD with momentum keeps one copy, Adam two) and its buffers; its whole input batch (the previous module's cached outputs,
or the images: resident even with micro-batches); and its whole output batch (the step returns the
module's output for the whole batch, for the next module's cache). The plan's peak is the largest
module's, so the bound is the largest of these sums over the modules. When the split is not known
yet (``--split balanced``, ``--modules auto``), each block counts with the smallest input and output
of any module that could hold it. Every term is one the estimator also counts, so a budget under
the bound is refused at once, instead of after a search that cannot succeed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from edgetrgl.models import BlockNet

def state_copies(optimizer: str = "sgd", momentum: float = 0.9) -> int:
    """Copies of the weights a module holds while it trains: the weights, their gradients and the
    optimizer's state (Adam: two moments; SGD: its momentum buffer, none without momentum)."""
    return 2 + (2 if optimizer == "adam" else int(momentum != 0))


@dataclass(frozen=True)
class LowerBound:
    bytes: int
    what: str  # what the bound counts, for the refusal's message


def lower_bound(blocknet: BlockNet, sample_shape: tuple[int, ...], batch: int, *,
                boundaries: list[int] | None = None, whole_network: bool = False,
                half_precision: bool = False, copies: int = state_copies()) -> LowerBound:
    """Bytes every plan of ``blocknet`` needs at least, for the largest module's tensors.

    Args:
        blocknet: the network (real, built on the CPU; not modified).
        sample_shape: one sample's input shape ``(C, H, W)``.
        batch: the training batch (``--micro-batch`` if set: the resident input batch).
        boundaries: the first block of modules 2..K when the split is known; None: any split.
        whole_network: a regime that trains every module at once (e2e, parallel): all blocks count.
        half_precision: the step may autocast to bf16/fp16 (a module's output may then take 2 bytes).
        copies: fp32 copies of the weights held while training (:func:`state_copies`).
    """
    num_blocks = len(blocknet.blocks)
    states = [_state_bytes([block], copies) for block in blocknet.blocks]
    states[0] += _state_bytes([blocknet.stem], copies)  # the stem travels with the first block
    inputs, outputs = _per_sample_elements(blocknet, sample_shape)
    out_bytes = 2 if half_precision else 4

    def module(first: int, stop: int) -> int:
        return sum(states[first:stop]) + batch * (inputs[first] * 4 + outputs[stop - 1] * out_bytes)

    if whole_network:
        return LowerBound(module(0, num_blocks), "one step of the whole network (weights, gradients, optimizer "
                                                 "state, input and output batches)")
    if boundaries is not None:
        starts = [0, *boundaries]
        need = max(module(a, b) for a, b in zip(starts, [*boundaries, num_blocks]))
        return LowerBound(need, "the largest module of this split (its weights, gradients and optimizer state, "
                                "its input and output batches)")
    need = max(states[b] + batch * (min(inputs[:b + 1]) * 4 + min(outputs[b:]) * out_bytes) for b in range(num_blocks))
    return LowerBound(need, "a module holding any one block (its weights, gradients and optimizer state, and "
                            "the smallest input and output batches it could have)")


def _state_bytes(modules: list[torch.nn.Module], copies: int) -> int:
    params = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    buffers = sum(b.numel() * b.element_size() for m in modules for b in m.buffers())
    return copies * params + buffers


def _per_sample_elements(blocknet: BlockNet, sample_shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Elements per sample of each block's input and output: one sample through the network, on the CPU."""
    parts = [blocknet.stem, *blocknet.blocks]
    was = [m.training for m in parts]
    for m in parts:
        m.eval()  # must not move BatchNorm's running statistics
    inputs, outputs = [], []
    try:
        with torch.no_grad():
            x = torch.zeros(1, *sample_shape)
            inputs_0 = math.prod(x.shape[1:])
            x = blocknet.stem(x)
            for i, block in enumerate(blocknet.blocks):
                inputs.append(inputs_0 if i == 0 else math.prod(x.shape[1:]))
                x = block(x)
                outputs.append(math.prod(x.shape[1:]))
    finally:
        for m, mode in zip(parts, was):
            m.train(mode)
    return inputs, outputs
