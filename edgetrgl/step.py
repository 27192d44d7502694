"""One module's training step, and the pieces every step shares: optimizer, learning rate, loss weights.

This is the lowest training layer: the regimes' loops, the fake-tensor memory estimates and the
bench all run exactly this code, so what is estimated and benchmarked is what is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from edgetrgl.config import OPTIMIZERS
from edgetrgl.losses import TauSchedule, module_loss, objective_loss
from edgetrgl.objectives import objective_of
from edgetrgl.precision import autocast_for, scaler_for
from edgetrgl.transport import TRANSPORT_IMPLS

__all__ = ["OPTIMIZERS", "StepResult", "TauSchedule", "count_correct", "frozen_step", "local_step", "make_optimizer",
           "make_sgd", "set_lr"]


def make_sgd(params: Iterable[nn.Parameter], lr: float, momentum: float = 0.9, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """SGD with momentum, the paper's optimiser (its momentum buffers count in every memory figure)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float, momentum: float = 0.9,
                   weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """The optimizer ``--optimizer`` names: ``sgd`` (:func:`make_sgd`) or ``adam``.

    Adam is PredSim's (anokland/local-loss trains with Adam, betas (0.9, 0.999), no weight decay):
    it divides each gradient by its running scale, so a loss weight such as PredSim's 0.01 on the
    cross-entropy does not shrink its steps the way it does under SGD. Adam keeps two buffers per
    parameter where SGD keeps one; ``momentum`` is SGD's alone.

    Raises:
        ValueError: an unknown name (the config refuses it first, as a one-line user error).
    """
    if name == "sgd":
        return make_sgd(params, lr, momentum, weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


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

    ce: torch.Tensor  # the objective's loss without the transport term (VanGL, TRGL: the cross-entropy)
    transport: torch.Tensor
    correct: torch.Tensor  # training samples the head classified right (for train_accuracy)
    seen: int
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # the objective's named terms


def local_step(
    stage: nn.Module,
    head: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: tuple[float, float],
    label_smoothing: float,
    micro_batch: int | None = None,
    *,
    transport_impl: str = "fused",
    checkpoint_blocks: bool = False,
    precision: str = "fp32",
    image: torch.Tensor | None = None,
    keep_output: bool = True,
) -> tuple[torch.Tensor | None, StepResult]:
    """One module's training step: forward, local loss, backward, step. Returns the detached output.

    The output is detached, so no gradient can cross into the previous module. With ``micro_batch``
    smaller than the batch, the batch is processed in chunks whose gradients accumulate (each
    chunk's loss weighted by its share of the batch), so only one chunk's activations are alive at a
    time. BatchNorm then normalises per chunk: the one way the result differs from the full batch.

    ``transport_impl="fused"`` injects the transport term's gradient in backward instead of keeping
    the residues alive for it (same gradients; ``"autograd"`` is the plain reference);
    ``checkpoint_blocks`` recomputes each block's activations in backward; ``precision`` (fp32,
    bf16, fp16) autocasts the forward, with a gradient scaler for fp16.

    The local loss is the head's objective (:mod:`edgetrgl.objectives`; a plain head: VanGL's
    cross-entropy), plus the transport term when its weight is not 0. ``image`` is the network's
    input batch, for objectives that need it (InfoPro's reconstruction); others ignore it.

    ``keep_output=False`` returns None for the output: a step whose output goes nowhere (the last
    module of a step, the sequential regime's only one) then holds no chunk's output beyond its own
    backward, instead of the whole batch's by the last chunk (at micro-batches of 16, a third of
    ResNet-20's first module's peak).
    """
    if transport_impl not in TRANSPORT_IMPLS:
        raise ValueError(f"transport_impl must be one of {TRANSPORT_IMPLS}, got {transport_impl!r}")
    differentiable = callable(weights[1]) or weights[1] != 0.0
    if callable(weights[1]):
        # a multiplier update step: the weight depends on this step's CE, known only after the forward,
        # so this one step (one in every s) keeps its residues for the plain formulation
        transport_impl = "autograd"
    autocast = autocast_for(precision, x.device)
    scaler = scaler_for(precision, optimizer, x.device)
    optimizer.zero_grad(set_to_none=True)
    batch = x.shape[0]
    chunked = micro_batch is not None and micro_batch < batch
    objective = objective_of(head)
    if objective is not None and objective.needs_image and image is None:
        raise ValueError(f"the {objective.name} objective needs the input images: pass image=")
    outs, ce_sum, transport_sum, correct, term_sums = [], 0.0, 0.0, 0, {}
    for start in range(0, batch, micro_batch if chunked else batch):
        xc, yc = (x[start:start + micro_batch], y[start:start + micro_batch]) if chunked else (x, y)
        imagec = image[start:start + micro_batch] if chunked and image is not None else image
        share = xc.shape[0] / batch
        # the transport term's loss weight as the loss's backward hands it down: * share, * scale
        injected = None
        if transport_impl == "fused" and differentiable:
            injected = float(torch.tensor(share, dtype=torch.float32) * weights[1]) if chunked else weights[1]
            if scaler is not None:
                injected = scaler.scale(torch.full((), injected, device=x.device))
        with autocast:
            out, transport = stage.forward_transport(xc, differentiable=differentiable, transport_weight=injected,
                                                     checkpoint_blocks=checkpoint_blocks)
            if objective is None:
                logits = head(out)
            else:
                local = objective.loss(head, out, yc, image=imagec, label_smoothing=label_smoothing)
                logits = local.logits
        if objective is None:
            loss, ce = module_loss(logits.float(), yc, transport, weights[0], weights[1], label_smoothing)
            terms = {"ce": ce}
        else:
            loss, ce = objective_loss(local.loss, transport, weights[0], weights[1])
            terms = local.terms
        loss = loss * share if chunked else loss
        (scaler.scale(loss) if scaler is not None else loss).backward()
        correct = correct + (logits.detach().argmax(dim=1) == yc).sum()
        if keep_output:
            outs.append(out.detach().to(x.dtype))
        del out, logits
        ce_sum = ce_sum + ce * share if chunked else ce
        transport_sum = transport_sum + transport.detach() * share if chunked else transport.detach()
        for name, value in terms.items():
            term_sums[name] = term_sums.get(name, 0.0) + value * share if chunked else value
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    out = None if not keep_output else torch.cat(outs) if chunked else outs[0]
    return out, StepResult(ce=ce_sum, transport=transport_sum, correct=correct, seen=batch, terms=term_sums)


def frozen_step(stage, head, optimizer, x, y, weights, label_smoothing, micro_batch=None):
    """``local_step`` for a module frozen for fine-tuning: forward only, for its output and its logged loss."""
    with torch.no_grad():
        out, transport = stage.forward_transport(x, differentiable=False)
        logits = head(out)
        _, ce = module_loss(logits, y, transport, weights[0], weights[1], label_smoothing)
        correct = (logits.argmax(dim=1) == y).sum()
    return out, StepResult(ce=ce, transport=transport, correct=correct, seen=x.shape[0])


@torch.no_grad()
def count_correct(logits: torch.Tensor, y: torch.Tensor) -> int:
    return int((logits.argmax(dim=1) == y).sum())
