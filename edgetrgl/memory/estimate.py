"""Estimate peak memory without allocating it: one training step under ``FakeTensorMode``.

The network is built inside the fake mode (its parameters take no memory), then one step of the
regime runs under MemTracker, which counts every tensor's bytes by category. This takes seconds even
for the paper's ResNet-110 at 96x96, batch 64, on a laptop CPU.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator

import torch
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily

from edgetrgl.memory.tensor import TensorPeak, track_peak
from edgetrgl.memory.work import Work, count_work
from edgetrgl.modular import ModularNet
from edgetrgl.objectives import objective_of
from edgetrgl.step import local_step, make_optimizer, make_sgd

OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def default_sgd(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with momentum, the paper's (and ``--optimizer``'s default): what an estimate counts unless told."""
    return make_sgd(params, lr=0.1)


def optimizer_of(cfg) -> OptimizerFactory:
    """The optimizer a run's modules get (``--optimizer``, with its momentum and weight decay), for
    the estimates: Adam keeps two state tensors per parameter, SGD with momentum one, without none."""
    return functools.partial(_configured_optimizer, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)


def _configured_optimizer(name: str, lr: float, momentum: float, weight_decay: float,
                          params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return make_optimizer(name, params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def estimate_sequential(build: Callable[[], ModularNet], batch_shape: tuple[int, ...], num_classes: int,
                        transport: bool = True, make_optimizer: OptimizerFactory = default_sgd,
                        prefetch_depth: int = 0, micro_batch: int | None = None, precision: str = "fp32",
                        checkpoint_blocks: bool = False) -> list[TensorPeak]:
    """Peak of training each module alone, as the sequential regime does.

    Resident: module k, its head, its optimizer state, one input batch (module k-1's cached output)
    and ``prefetch_depth`` more batches waiting in the prefetcher.

    Args:
        build: returns the split network; called inside the fake mode.
        batch_shape: ``(B, C, H, W)`` of one input batch.
        num_classes: label range.
        transport: TRGL (True) or VanGL (False).
        make_optimizer: the optimizer each module gets (momentum buffers count).
        prefetch_depth: extra input batches resident.
        micro_batch: gradient accumulation over chunks of this size (see ``local_step``).
        precision, checkpoint_blocks: as ``local_step`` takes them (the step runs under the same
            autocast; fp16 is estimated as bf16, the same sizes: a gradient scaler cannot step on
            fake tensors).

    Returns:
        One :class:`TensorPeak` per module.

    The planner asks through :class:`~edgetrgl.memory.estimator.SequentialEstimator`, which gives
    these figures with each step measured once.
    """
    return [track_peak(step, *resident)
            for step, resident in _fake_module_steps(build, batch_shape, num_classes, transport, make_optimizer,
                                                     prefetch_depth, micro_batch, precision, checkpoint_blocks)]


def sequential_work(build: Callable[[], ModularNet], batch_shape: tuple[int, ...], num_classes: int,
                    transport: bool = True, micro_batch: int | None = None, precision: str = "fp32",
                    checkpoint_blocks: bool = False, make_optimizer: OptimizerFactory = default_sgd) -> list[Work]:
    """The work of one training step of each module (FLOPs, bytes written, ops), counted on fake
    tensors like :func:`estimate_sequential`'s peaks: what the planner's time model prices."""
    return [count_work(step) for step, _ in _fake_module_steps(build, batch_shape, num_classes, transport, make_optimizer, 0,
                                                                micro_batch, precision, checkpoint_blocks)]


def _fake_module_steps(build, batch_shape, num_classes, transport, make_optimizer, prefetch_depth, micro_batch,
                       precision, checkpoint_blocks) -> Iterator[tuple[Callable[[], object], tuple]]:
    """Yield each module's training step (warmed up: gradients and momentum exist, the steady state)
    and what is resident while it runs; the next module's input follows, as the cache serves it."""
    options = _step_options(precision, checkpoint_blocks)
    with FakeTensorMode() as mode:
        net = build_fake(build, mode)
        x = torch.randn(batch_shape)
        y = torch.randint(0, num_classes, (batch_shape[0],))
        image = x  # the images stay resident beside every module whose objective reads them (InfoPro)
        for k in range(net.num_modules):
            stage, head = net.stages[k], net.heads[k]
            optimizer = make_optimizer(list(stage.parameters()) + list(head.parameters()))
            waiting = [torch.empty_like(x) for _ in range(prefetch_depth)]
            images = (image,) if _needs_image(head) else ()
            step = functools.partial(local_step, stage, head, optimizer, x, y, (1.0, 1.0 if transport else 0.0), 0.0,
                                     micro_batch, image=image, keep_output=False, **options)
            step()  # warm-up
            yield step, (stage, head, optimizer, x, y, *images, *waiting)
            with torch.no_grad():
                x = stage.eval()(x)


def estimate_parallel(build: Callable[[], ModularNet], batch_shape: tuple[int, ...], num_classes: int,
                      transport: bool = True, make_optimizer: OptimizerFactory = default_sgd, precision: str = "fp32",
                      checkpoint_blocks: bool = False) -> TensorPeak:
    """Peak of one parallel step: every module resident, activations of one module at a time.

    With one module (``build`` returns K = 1) this is end-to-end backprop. ``precision`` and
    ``checkpoint_blocks`` as in :func:`estimate_sequential`.
    """
    options = _step_options(precision, checkpoint_blocks)
    with FakeTensorMode() as mode:
        net = build_fake(build, mode)
        x = torch.randn(batch_shape)
        y = torch.randint(0, num_classes, (batch_shape[0],))
        optimizers = [make_optimizer(list(s.parameters()) + list(h.parameters())) for s, h in zip(net.stages, net.heads)]

        def step() -> None:
            h = x
            for k in range(net.num_modules):
                h, _ = local_step(net.stages[k], net.heads[k], optimizers[k], h, y, (1.0, 1.0 if transport else 0.0), 0.0,
                                  image=x, keep_output=k < net.num_modules - 1, **options)

        step()  # warm-up: in the steady state every module's gradients and momentum are resident
        return track_peak(step, net, *optimizers, x, y)


def _needs_image(head) -> bool:
    objective = objective_of(head)
    return objective is not None and objective.needs_image


def _step_options(precision: str, checkpoint_blocks: bool) -> dict:
    return {"precision": "bf16" if precision == "fp16" else precision, "checkpoint_blocks": checkpoint_blocks}


def build_fake(build: Callable[[], ModularNet], mode: FakeTensorMode) -> ModularNet:
    """Build the network for real (outside the fake mode: some initialisers, such as
    ``trunc_normal_``, cannot run on fake tensors), then swap its tensors for fake ones in place."""
    with unset_fake_temporarily():
        net = build()
        slots = [(sub, name, t.detach(), isinstance(t, torch.nn.Parameter) and t.requires_grad, kind)
                 for sub in net.modules()
                 for kind, table in (("param", sub._parameters), ("buffer", sub._buffers))
                 for name, t in table.items() if t is not None]
    for sub, name, real, requires_grad, kind in slots:
        fake = mode.from_tensor(real)
        if kind == "param":
            sub._parameters[name] = torch.nn.Parameter(fake, requires_grad=requires_grad)
        else:
            sub._buffers[name] = fake
    return net
