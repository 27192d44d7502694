"""A lower bound on the memory of any plan, computed in well under a second, before any search.

Whatever the planner chooses (K, boundaries, micro-batch, checkpointing, precision), a module being
trained holds at least: the weights of one block, their gradients and SGD's momentum (three copies,
fp32: mixed precision keeps fp32 weights), its buffers, its full input batch (the cached outputs of
the previous module, or the images: the estimator counts the whole batch resident even with
micro-batches), and one sample's activation at a block's output. Each term is taken at its smallest
over the blocks, so the sum is below every plan's estimated peak: a budget under it is refused at
once, instead of after a search that cannot succeed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from edgetrgl.models import BlockNet

MOMENTS = 3  # weights, gradients, SGD momentum (the estimator's optimizer)


@dataclass(frozen=True)
class LowerBound:
    bytes: int
    what: str  # what the bound counts, for the refusal's message


def lower_bound(blocknet: BlockNet, sample_shape: tuple[int, ...], batch: int, *, whole_network: bool = False,
                half_precision: bool = False) -> LowerBound:
    """Bytes every plan of ``blocknet`` needs at least, for one module's tensors.

    Args:
        blocknet: the network (real, built on the CPU; not modified).
        sample_shape: one sample's input shape ``(C, H, W)``.
        batch: the training batch (``--micro-batch`` if set: the resident input batch).
        whole_network: a regime that trains every module at once (e2e, parallel): all blocks count.
        half_precision: the step may autocast to bf16/fp16 (activations then take 2 bytes).
    """
    parts = [[block] for block in blocknet.blocks]
    parts[0] = [blocknet.stem, *parts[0]]  # the stem travels with the first block
    states = [_state_bytes(part) for part in parts]
    inputs, outputs = _per_sample_elements(blocknet, sample_shape)
    act_bytes = 2 if half_precision else 4
    if whole_network:
        weights, first_input = sum(states), inputs[0]
        what = "the whole network's weights, gradients and momentum, and its input batch"
    else:
        weights, first_input = min(states), min(inputs)
        what = "the smallest module (one block's weights, gradients and momentum), its input batch and one sample's activations"
    total = weights + batch * first_input * 4 + min(outputs) * act_bytes
    return LowerBound(int(total), what)


def _state_bytes(modules: list[torch.nn.Module]) -> int:
    params = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    buffers = sum(b.numel() * b.element_size() for m in modules for b in m.buffers())
    return MOMENTS * params + buffers


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
