"""The transport term's gradient, formed in backward without keeping the residues alive (issue 11).

The plain ("autograd") formulation adds ``w * mean(r ** 2)`` to the loss; its backward needs r,
so every residue stays alive from the forward to the backward: one extra activation per block
(a block's own backward keeps only the *input* of its last BatchNorm or Linear, never r).

The fused formulation leaves the loss as CE and adds ``d/dr [w * mean(r ** 2)] = 2 * w * r / N``
to r's incoming gradient in backward, recomputing r from the tensor that the residual branch's last
layer keeps anyway:

- a residual block computes its residue as ``residue_tail(tail, h)`` (``r = tail(h)``, ``tail``
  being the branch's last BatchNorm or Linear, which saves ``h`` for its own backward). Under
  :func:`inject_transport` the residue passes through :class:`_ResidueTap`, an identity that saves
  only ``h`` (the same storage the tail keeps) and recomputes ``r = tail(h)`` in its backward (or
  through one of the closed forms below);
- a displacement block (``out - x``, VGG) passes ``out`` through :class:`_DisplacementTap`, which
  saves ``out`` and ``x``: the next layer and this block's first layer keep them anyway.

Two common tails skip the recomputation: a training-mode BatchNorm (:class:`_BatchNormTail`: the
forward keeps its per-channel statistics, so backward rebuilds r in one elementwise pass instead of
normalising again) and a Linear (:class:`_LinearTail`: never a tensor the size of r). Their gradient
equals the plain one within fp32 accuracy; any other tail runs the same kernels on the same inputs
and equals it bit for bit on the CPU (tests/test_transport.py). The tail must be deterministic (no
dropout). Squares are taken in fp32 in both formulations, also under autocast.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

TRANSPORT_IMPLS = ("fused", "autograd")

Weight = float | torch.Tensor  # a 0-d tensor when a gradient scaler multiplies it (no host sync)

_local = threading.local()


@dataclass
class _Injection:
    weight: Weight
    tapped: list[torch.Tensor] = field(default_factory=list)


@contextmanager
def inject_transport(weight: Weight) -> Iterator[_Injection]:
    """Within this context, :func:`residue_tail` taps residues so that their transport gradient,
    with loss weight ``weight``, is added in backward. Yields the record of tapped residues."""
    previous = getattr(_local, "injection", None)
    _local.injection = _Injection(weight)
    try:
        yield _local.injection
    finally:
        _local.injection = previous


def residue_tail(tail: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Return the residue ``tail(h)``; blocks compute their residues through this.

    Outside :func:`inject_transport` it is just ``tail(h)``. Inside, the transport gradient of the
    residue is added in backward from ``h``, which ``tail`` (a BatchNorm or Linear) keeps anyway.
    """
    injection = getattr(_local, "injection", None)
    if injection is not None and torch.is_grad_enabled() and _fusable_linear(tail, h):
        r = _LinearTail.apply(h, tail.weight, tail.bias, injection.weight)
        injection.tapped.append(r)
        return r
    if injection is not None and torch.is_grad_enabled() and _fusable_batch_norm(tail, h):
        r = _BatchNormTail.apply(h, tail.weight, tail.bias, tail, injection.weight)
        injection.tapped.append(r)
        return r
    r = tail(h)
    if injection is None or not (torch.is_grad_enabled() and r.requires_grad):
        return r
    r = _ResidueTap.apply(r, h, tail, injection.weight, _autocast_state(r.device.type))
    injection.tapped.append(r)
    return r


def tap_displacement(out: torch.Tensor, x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """Identity on ``out`` whose backward adds the gradient of ``weight * mean((out - x) ** 2)``."""
    return _DisplacementTap.apply(out, x, weight)


def squared_mean(r: torch.Tensor) -> torch.Tensor:
    """``mean(r ** 2)`` in fp32 (a no-op cast for fp32 tensors): the transport figure of one residue."""
    return r.float().pow(2).mean()


def logged_squared_mean(r: torch.Tensor) -> torch.Tensor:
    """``mean(r ** 2)`` of a residue whose figure is only logged: one pass, no tensor the size of r
    (pow + mean writes one; on a CPU that costs a tenth of a block's convolution)."""
    flat = r.detach().float().reshape(-1)
    return torch.dot(flat, flat) / flat.numel()


class _ResidueTap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, h, tail, weight, amp):
        ctx.save_for_backward(h)
        ctx.tail, ctx.weight, ctx.amp = tail, weight, amp
        return r.view_as(r)

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        with torch.no_grad(), _autocast(ctx.amp), buffers_kept(ctx.tail):
            r = ctx.tail(h)
        if _root(r) is _root(h):
            r = r.clone()  # a tail that returns h or a view of it: the gradient is formed in place below
        return _plus_transport_grad(grad, r, ctx.weight), None, None, None, None


class _LinearTail(torch.autograd.Function):
    """``r = h @ W.T + b`` whose backward adds the transport gradient without a tensor the size of r.

    The tap above materialises ``g + 2 w r / N`` (one tensor the size of r) before the Linear's
    backward; where r is as large as the block's other activations (a transformer) that shows at
    the peak. Here the Linear's backward runs on g, and the transport part ``c * r`` (c = 2 w / N)
    is recomputed from h a sixteenth of the rows at a time and accumulated into the same three
    gradients. Not the plain rounding (other summation order): equal to it within fp32 accuracy.
    """

    CHUNKS = 16

    @staticmethod
    def forward(ctx, h, weight, bias, transport_weight):
        ctx.save_for_backward(h, weight, bias)
        ctx.transport_weight = transport_weight
        return nn.functional.linear(h, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        h, weight, bias = ctx.saved_tensors
        rows = grad.numel() // grad.shape[-1]
        coef = 2 * _coef(ctx.transport_weight, grad.numel())
        g2, h2 = grad.reshape(rows, -1), h.reshape(rows, -1)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = g2 @ weight if need_h else None
        grad_w = g2.t() @ h2 if need_w else None
        grad_b = g2.sum(0) if need_b and bias is not None else None
        step = -(-rows // _LinearTail.CHUNKS)
        for start in range(0, rows, step):
            h_rows = h2[start:start + step]
            r_rows = nn.functional.linear(h_rows, weight, bias).mul_(coef)
            if grad_h is not None:
                grad_h[start:start + step].addmm_(r_rows, weight)
            if grad_w is not None:
                grad_w.addmm_(r_rows.t(), h_rows)
            if grad_b is not None:
                grad_b.add_(r_rows.sum(0))
        return grad_h.view(h.shape) if grad_h is not None else None, grad_w, grad_b, None


class _BatchNormTail(torch.autograd.Function):
    """``r = BatchNorm(h)`` in training mode whose backward adds the transport gradient cheaply.

    The tap above recomputes r by running the BatchNorm again, batch statistics and all (on the
    CPU that costs as much as the forward's normalisation, about 8x an elementwise pass). Here the
    forward keeps the per-channel mean and inverse deviation it computed anyway (C values each).
    With ``r = a h + b`` per channel (a = weight * invstd, b = bias - a * mean), the transport part
    ``c r`` (c = 2 w / N) is ``(c a) h + c b``: backward adds it to the incoming gradient in one
    multiply-add and one per-channel add, then runs BatchNorm's own backward on the sum. Not the
    plain rounding: equal to it within fp32 accuracy.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, bn, transport_weight):
        bn.num_batches_tracked.add_(1)
        # momentum None: a cumulative average, as nn.BatchNorm computes it
        momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        r, mean, invstd = torch.native_batch_norm(h, weight, bias, bn.running_mean, bn.running_var, True, momentum,
                                                  bn.eps)
        ctx.save_for_backward(h, weight, bias, mean, invstd)
        ctx.eps, ctx.coef = bn.eps, 2 * _coef(transport_weight, h.numel())
        return r

    @staticmethod
    def backward(ctx, grad):
        h, weight, bias, mean, invstd = ctx.saved_tensors
        per_channel = (1, -1) + (1,) * (h.dim() - 2)
        a = invstd * weight
        b = torch.addcmul(bias, a, mean, value=-1).mul_(ctx.coef)
        total = torch.addcmul(grad, h, a.mul_(ctx.coef).view(per_channel)).add_(b.view(per_channel))
        need = [bool(n) for n in ctx.needs_input_grad[:3]]
        grad_h, grad_w, grad_b = _BN_BACKWARD(total, h, weight, None, None, mean, invstd, True, ctx.eps, need)
        return grad_h, grad_w, grad_b, None, None


_BN_BACKWARD = torch.ops.aten.native_batch_norm_backward.default  # the overload itself: no lookup per call


def _fusable_batch_norm(tail: nn.Module, h: torch.Tensor) -> bool:
    """A plain fp32 BatchNorm (1d or 2d) in training mode with running statistics, outside autocast."""
    return (type(tail) in (nn.BatchNorm1d, nn.BatchNorm2d) and tail.training and tail.track_running_stats
            and tail.running_mean is not None and tail.affine and h.dtype == tail.weight.dtype == torch.float32
            and not _autocast_state(h.device.type)[1])


def _fusable_linear(tail: nn.Module, h: torch.Tensor) -> bool:
    """A plain fp32 Linear outside autocast (the closed form is written for that case)."""
    return (type(tail) is nn.Linear and h.dtype == tail.weight.dtype == torch.float32
            and not _autocast_state(h.device.type)[1])


class _DisplacementTap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out, x, weight):
        ctx.save_for_backward(out, x)
        ctx.weight = weight
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        out, x = ctx.saved_tensors
        term = _transport_grad(out.float() - x.float(), ctx.weight)
        # the plain formulation: sub's backward hands -grad to x
        return grad + term.to(grad.dtype), (-term).to(x.dtype), None


def _root(t: torch.Tensor) -> torch.Tensor:
    return t._base if t._base is not None else t


def _transport_grad(r_f32: torch.Tensor, weight: Weight) -> torch.Tensor:
    """``(weight / N) * (2 * r)``, formed as the plain backward forms it (mul, mean, pow) so that
    the result is the same bit for bit; may overwrite ``r_f32`` (a temporary)."""
    return r_f32.mul_(2).mul_(_coef(weight, r_f32.numel()))


def _coef(weight: Weight, numel: int) -> Weight:
    """``weight / N`` in fp32, as the mean's backward forms it."""
    if isinstance(weight, torch.Tensor):
        return weight.float() / numel
    return float(torch.tensor(weight, dtype=torch.float32) / numel)  # on the host: no device transfer  # (2 * r) * coef: exact powers of two keep the plain rounding


def _plus_transport_grad(grad: torch.Tensor, r: torch.Tensor, weight: Weight) -> torch.Tensor:
    term = _transport_grad(r.float(), weight)
    if term.dtype == grad.dtype:
        return term.add_(grad)  # in place: one temporary, the size of r
    return grad + term.to(grad.dtype)


def _autocast_state(device_type: str) -> tuple[str, bool, torch.dtype]:
    try:
        return device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError, RuntimeError):  # a device type autocast does not know
        return device_type, False, torch.float32


def _autocast(state: tuple[str, bool, torch.dtype]):
    """Autograd runs backward outside the forward's autocast: recompute under the same one."""
    device_type, enabled, dtype = state
    return torch.autocast(device_type, dtype=dtype) if enabled else nullcontext()


@contextmanager
def buffers_kept(module: nn.Module) -> Iterator[None]:
    """Run with copies of ``module``'s buffers in their place, then put the originals back.

    Recomputing a BatchNorm in training mode would move its running statistics a second time.
    Swapping in copies, rather than restoring values in place, leaves the originals' version
    counters alone: BatchNorm's backward keeps its running statistics and checks them.
    """
    swapped = [(sub, name, buffer) for sub in module.modules() for name, buffer in sub._buffers.items() if buffer is not None]
    for sub, name, buffer in swapped:
        sub._buffers[name] = buffer.clone()
    try:
        yield
    finally:
        for sub, name, buffer in swapped:
            sub._buffers[name] = buffer
