"""Pieces every regime uses: device choice, optimizer, one local step, evaluation, memory readings."""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from typing import Iterable

import psutil
import torch
from torch import nn

from edgetrgl.config import TrainConfig
from edgetrgl.errors import UserError
from edgetrgl.losses import module_loss


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but no CUDA GPU is available (use --device cpu or auto)")
    return torch.device(name)


def make_optimizer(params: Iterable[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum, as in the paper."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def cosine_lr(optimizer: torch.optim.Optimizer, base_lr: float, step: int, total: int, schedule: str = "cosine") -> None:
    """Set the learning rate of ``step`` out of ``total``: on a cosine from ``base_lr`` to 0, or
    ``base_lr`` throughout with ``schedule="constant"`` (``cfg.lr_schedule``; the paper's recipe)."""
    lr = base_lr if schedule == "constant" else 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    for group in optimizer.param_groups:
        group["lr"] = lr


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: training stops rather than writing garbage."""


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
def evaluate_heads(net, dataset, batch_size: int, device: torch.device | str) -> list[float]:
    """Test accuracy of every module's head on ``dataset``, in one pass (eval mode, no augmentation)."""
    from edgetrgl.data import make_loader

    net.eval()
    correct, total = [0] * net.num_modules, 0
    for x, y in make_loader(dataset, batch_size, shuffle=False, augment=False, seed=0):
        x, y = x.to(device), y.to(device)
        for k in range(net.num_modules):
            x = net.stages[k](x)
            correct[k] += count_correct(net.heads[k](x), y)
        total += y.numel()
    return [c / max(total, 1) for c in correct]


@torch.no_grad()
def count_correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(dim=1) == y).sum())


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def open_file_count() -> int:
    """Open file descriptors of this process (a leak shows as growth from module to module)."""
    try:
        return psutil.Process().num_fds()
    except (AttributeError, psutil.Error):  # num_fds is POSIX-only
        return -1
