"""Data parallelism inside a module: each rank trains the same module on its shard of every epoch;
the module's gradients are averaged across ranks before each optimizer step.

Why an optimizer pre-step hook rather than wrapping each stage in ``DistributedDataParallel``: the
loops call ``stage.forward_transport`` and ``head`` separately and step each module's own optimizer,
and a checkpoint names parameters as the stage does; the hook keeps every loop and every key
unchanged. It all-reduces once per step (after gradient accumulation over micro-batches) in one
flat buffer; DDP would overlap that all-reduce with the backward pass, which this does not.

BatchNorm normalises each rank's shard with its own statistics, so a data-parallel run equals a
single-process run at the same global batch only for models without BatchNorm (or with
``--sync-bn``, GPUs only). Running statistics are taken from rank 0 at every step, as DDP does.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from edgetrgl.errors import UserError


def shard_dataset(dataset, rank: int, world_size: int):
    """Rank ``rank``'s fixed shard: samples ``rank, rank + W, rank + 2W, ...`` (equal sizes).

    The shard is fixed for the whole run, so a rank caches only its own samples' activations;
    each epoch still visits the shard in a fresh seeded order. The last ``len % W`` samples are
    left out so that every rank takes the same number of steps (as ``DistributedSampler`` with
    ``drop_last``).
    """
    from edgetrgl.data.validation import subset

    usable = len(dataset) - len(dataset) % world_size
    if usable < world_size:
        raise UserError(f"the training set has {len(dataset)} sample(s): too few for {world_size} ranks")
    return subset(dataset, torch.arange(rank, usable, world_size))


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The global batch split evenly over the ranks.

    Raises:
        UserError: it does not split evenly.
    """
    if batch_size % world_size:
        raise UserError(f"--batch-size {batch_size} must be a multiple of the {world_size} ranks with --data-parallel "
                        f"(it is the global batch; each rank takes an equal part)")
    return batch_size // world_size


def average_gradients(optimizer: torch.optim.Optimizer, modules: Callable[[], list[nn.Module]]) -> None:
    """Before every ``optimizer.step()``: average its gradients over all ranks and copy rank 0's
    buffers (BatchNorm running statistics) into ``modules()``, so that every replica stays equal."""
    world = dist.get_world_size()

    def hook(opt, args, kwargs) -> None:
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)  # SUM: gloo has no AVG
            flat /= world
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        for module in modules():
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    optimizer.register_step_pre_hook(hook)


def convert_sync_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm by ``SyncBatchNorm`` (statistics over the global batch).

    Raises:
        UserError: on the CPU, where PyTorch's SyncBatchNorm does not run.
    """
    if device.type != "cuda":
        raise UserError("--sync-bn needs GPUs (PyTorch's SyncBatchNorm does not run on the CPU); "
                        "drop it, or use a model without BatchNorm")
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)
