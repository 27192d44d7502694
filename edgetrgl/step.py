"""One module's training step, and the pieces every step shares: optimizer, learning rate, loss weights.

This is the lowest training layer: the regimes' loops, the fake-tensor memory estimates and the
bench all run exactly this code, so what is estimated and benchmarked is what is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from edgetrgl.losses import TauSchedule, module_loss

__all__ = ["StepResult", "TauSchedule", "count_correct", "local_step", "make_sgd", "set_lr"]


def make_sgd(params: Iterable[nn.Parameter], lr: float, momentum: float = 0.9, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """SGD with momentum, the paper's optimiser (its momentum buffers count in every memory figure)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, schedule: str, base_lr: float, step: int, total: int) -> None:
    """Set the learning rate of ``step`` out of ``total``: ``cosine`` from ``base_lr`` to 0, or ``constant``."""
    if schedule == "constant":
        lr = base_lr
    else:
        lr = 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class StepResult:
    """Detached 0-d tensors (no host sync here: the loops call ``float`` when they log)."""

    ce: torch.Tensor
    transport: torch.Tensor
    correct: torch.Tensor  # training samples the head classified right (for train_accuracy)
    seen: int


def local_step(
    stage: nn.Module,
    head: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: tuple[float, float],
    label_smoothing: float,
    micro_batch: int | None = None,
) -> tuple[torch.Tensor, StepResult]:
    """One module's training step: forward, local loss, backward, step. Returns the detached output.

    The output is detached, so no gradient can cross into the previous module. With ``micro_batch``
    smaller than the batch, the batch is processed in chunks whose gradients accumulate (each
    chunk's loss weighted by its share of the batch), so only one chunk's activations are alive at a
    time. BatchNorm then normalises per chunk: the one way the result differs from the full batch.
    """
    differentiable = weights[1] != 0.0
    optimizer.zero_grad(set_to_none=True)
    batch = x.shape[0]
    if micro_batch is None or micro_batch >= batch:
        out, transport = stage.forward_transport(x, differentiable=differentiable)
        logits = head(out)
        loss, ce = module_loss(logits, y, transport, weights[0], weights[1], label_smoothing)
        loss.backward()
        optimizer.step()
        correct = (logits.detach().argmax(dim=1) == y).sum()
        return out.detach(), StepResult(ce=ce, transport=transport.detach(), correct=correct, seen=batch)
    outs, ce_sum, transport_sum, correct = [], 0.0, 0.0, 0
    for start in range(0, batch, micro_batch):
        xc, yc = x[start:start + micro_batch], y[start:start + micro_batch]
        share = xc.shape[0] / batch
        out, transport = stage.forward_transport(xc, differentiable=differentiable)
        logits = head(out)
        loss, ce = module_loss(logits, yc, transport, weights[0], weights[1], label_smoothing)
        (loss * share).backward()
        correct = correct + (logits.detach().argmax(dim=1) == yc).sum()
        outs.append(out.detach())
        ce_sum, transport_sum = ce_sum + ce * share, transport_sum + transport.detach() * share
    optimizer.step()
    return torch.cat(outs), StepResult(ce=ce_sum, transport=transport_sum, correct=correct, seen=batch)


@torch.no_grad()
def count_correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(dim=1) == y).sum())
