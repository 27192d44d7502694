"""The one training step every joint method of the bench runs: e2e, checkpoint, offload, parallel.

One step is :func:`edgetrgl.step.local_step` for every module in turn (one module for the
baselines, K for parallel), each with the method's step options (``+ckpt``, ``+bf16``, ``+mbN``:
micro-batches whose gradients accumulate before the one optimizer step), under the method's
saved-tensor hooks (offload). Measuring, estimating (fake tensors) and counting FLOPs all call it,
so the figures of a method come from one body. The sequential regime trains one module at a time
with the same ``local_step`` (:mod:`edgetrgl.bench.methods`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch

from edgetrgl.bench.variants import Method
from edgetrgl.modular import ModularNet
from edgetrgl.step import local_step

SavedTensors = Callable[[], AbstractContextManager]


def offload_hooks(device: torch.device) -> SavedTensors:
    """Offload's saved tensors: to (pinned) host memory; on a CPU device this only adds copies."""
    return lambda: torch.autograd.graph.save_on_cpu(pin_memory=device.type == "cuda")


def joint_step(net: ModularNet, optimizers: list[torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor,
               weights: Callable[[int], tuple[float, float]], method: Method,
               saved: SavedTensors = nullcontext) -> None:
    """One training step of ``method`` through every module of ``net``.

    Args:
        net: the method's network (:func:`edgetrgl.bench.setting.build_net`).
        optimizers: one per module.
        x, y: the batch (``x`` is also the images an objective may read).
        weights: module index -> (CE, transport) loss weights.
        method: the parsed method; its :meth:`Method.step_options` go to every ``local_step``.
        saved: a context for the step's saved tensors (offload), or nothing.
    """
    options = method.step_options()
    h = x
    with saved():
        for k in range(net.num_modules):
            h, _ = local_step(net.stages[k], net.heads[k], optimizers[k], h, y, weights(k), 0.0, image=x,
                              keep_output=k < net.num_modules - 1, **options)
