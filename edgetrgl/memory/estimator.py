"""The planner's estimates: each module step measured once, its work counted in the same pass.

:func:`~edgetrgl.memory.estimate.estimate_sequential` builds a fake network, warms each module up
with the step it then measures, and measures it. A search asks for the same split at several
micro-batches and step options, and the solver asks again for what the planner already measured.
:class:`SequentialEstimator` measures each (split, module, micro-batch, checkpointing, precision)
once, counts its work (for the time model) in the same pass when asked (a separate pass under
checkpointing), stops at the first module
over the budget (the split cannot fit, whatever the others need), and warms each module up with one
plain full-batch step: its state (gradients, optimizer state) is the same after any step, and a
chunked warm-up cost as many fake steps as the measurement itself. Each measurement gets a freshly
built network: MemTracker leaves hook tables on the tensors it tracked, which change how many ops a
later step dispatches (the time model counts them). The figures are the from-scratch estimate's
(tests/test_estimator.py checks it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from edgetrgl.memory.estimate import OptimizerFactory, _needs_image, default_sgd, _step_options, build_fake
from edgetrgl.memory.tensor import TensorPeak, track_peak
from edgetrgl.memory.work import Work, count_work
from edgetrgl.modular import ModularNet
from edgetrgl.step import local_step

BuildFn = Callable[[int, list[int] | None], ModularNet]  # (num_modules, boundaries) -> network


@dataclass
class ModuleEstimate:
    peak: TensorPeak
    work: Work | None = None  # counted in the same pass when the estimator counts work


class _FakeSplit:
    """One split network on fake tensors, for one set of step options: each module is warmed up and
    measured once; module k's input is module k-1's output, as the cache serves it."""

    def __init__(self, build: Callable[[], ModularNet], batch_shape: tuple[int, ...], num_classes: int) -> None:
        self.mode = FakeTensorMode()
        with self.mode:
            self.net = build_fake(build, self.mode)
            self.image = torch.randn(batch_shape)
            self.labels = torch.randint(0, num_classes, (batch_shape[0],))
        self.inputs = [self.image]

    def warm_module(self, k: int, make_optimizer: OptimizerFactory,
                    transport: bool) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer, torch.Tensor]:
        """Module k after one plain full-batch step: its gradients and optimizer state exist, the
        steady state of a step at any micro-batch, checkpointing or precision."""
        with self.mode:
            while len(self.inputs) <= k:
                with torch.no_grad():
                    self.inputs.append(self.net.stages[len(self.inputs) - 1].eval()(self.inputs[-1]))
            stage, head = self.net.stages[k], self.net.heads[k]
            optimizer = make_optimizer(list(stage.parameters()) + list(head.parameters()))
            local_step(stage, head, optimizer, self.inputs[k], self.labels, (1.0, 1.0 if transport else 0.0), 0.0,
                       image=self.image)
        return stage, head, optimizer, self.inputs[k]


class SequentialEstimator:
    """Peaks (and work) of training each module alone, as :func:`estimate_sequential` and
    :func:`sequential_work` give them, each measured once.

    Args:
        build: ``(num_modules, boundaries) -> ModularNet`` (real weights are swapped for fake ones).
        batch_shape: ``(B, C, H, W)`` of one training batch.
        num_classes: label range.
        make_optimizer: each module's optimizer (its state counts).
        count_work: count each step's work (FLOPs, bytes, ops) in the same pass as its peak, for
            the time model (not under checkpointing); work asked for later, when not counted, costs
            one more pass.
        prefetch_depth: extra input batches resident.
    """

    def __init__(self, build: BuildFn, batch_shape: tuple[int, ...], num_classes: int, *,
                 make_optimizer: OptimizerFactory = default_sgd, count_work: bool = False, prefetch_depth: int = 0) -> None:
        self.build, self.batch_shape, self.num_classes = build, tuple(batch_shape), num_classes
        self.make_optimizer, self.count_work, self.prefetch_depth = make_optimizer, count_work, prefetch_depth
        self._open: dict[tuple, _FakeSplit] = {}  # a network whose later modules are not measured yet
        self._done: dict[tuple, ModuleEstimate] = {}
        self.measured = 0  # module steps measured (each key once)

    def modules(self, num_modules: int, boundaries: list[int] | None, micro_batch: int | None = None, *,
                precision: str = "fp32", checkpoint_blocks: bool = False, transport: bool = True,
                budget: int | None = None, work: bool = False) -> list[ModuleEstimate]:
        """Each module's estimate, first to last; with ``budget``, stop after the first module over it.
        ``work``: every estimate returned has its work."""
        micro = micro_batch if micro_batch is not None and micro_batch < self.batch_shape[0] else None
        options = (num_modules, tuple(boundaries) if boundaries else None, micro,
                   "bf16" if precision == "fp16" else precision, bool(checkpoint_blocks), transport)
        out = []
        for k in range(num_modules):
            found = self._done.get((options, k))
            if found is None:
                found = self._measure(options, k, work)
            elif work and found.work is None:
                found = ModuleEstimate(found.peak, self._work(options, k))
            self._done[(options, k)] = found
            out.append(found)
            if budget is not None and found.peak.peak_bytes > budget:
                break
        return out

    def _step(self, fake: _FakeSplit, options: tuple, k: int):
        num, bounds, micro, precision, checkpoint_blocks, transport = options
        stage, head, optimizer, x = fake.warm_module(k, self.make_optimizer, transport)
        step = functools.partial(local_step, stage, head, optimizer, x, fake.labels, (1.0, 1.0 if transport else 0.0),
                                 0.0, micro, image=fake.image, keep_output=False,
                                 **_step_options(precision, checkpoint_blocks))
        return step, (stage, head, optimizer, x, fake.labels, *((fake.image,) if _needs_image(head) else ()))

    def _network(self, options: tuple, k: int) -> _FakeSplit:
        """The network measured for ``options`` if module k is its next, else a fresh one."""
        fake = self._open.pop(options, None)
        if fake is None or len(fake.inputs) != k:
            num, bounds = options[:2]
            fake = _FakeSplit(lambda: self.build(num, list(bounds) if bounds else None), self.batch_shape,
                              self.num_classes)
        if k + 1 < options[0]:
            self._open[options] = fake
        return fake

    def _measure(self, options: tuple, k: int, work: bool) -> ModuleEstimate:
        fake = self._network(options, k)
        step, resident = self._step(fake, options, k)
        counted: list[Work] = []
        with fake.mode:
            waiting = [torch.empty_like(resident[3]) for _ in range(self.prefetch_depth)]
            # counted in the same pass, except under checkpointing: FlopCounterMode's hooks then keep
            # activations alive (a higher peak) and disturb later checkpointed estimates in the process
            in_pass = (self.count_work or work) and not options[4]
            measured = step if not in_pass else (lambda: counted.append(count_work(step)))
            peak = track_peak(measured, *resident, *waiting)
        self.measured += 1
        if work and not counted:
            return ModuleEstimate(peak, self._work(options, k))
        return ModuleEstimate(peak, counted[0] if counted else None)

    def _work(self, options: tuple, k: int) -> Work:
        """Work of a module measured without it: one more pass, on a fresh network (see the module's doc)."""
        fake = _FakeSplit(lambda: self.build(options[0], list(options[1]) if options[1] else None), self.batch_shape,
                          self.num_classes)
        step, _ = self._step(fake, options, k)
        with fake.mode:
            return count_work(step)
