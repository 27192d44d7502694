"""Modelled work of one training step: FLOPs counted under fake tensors (the ``--estimate`` time axis).

Recomputation is counted (checkpointing pays its second forward here); precision is not (a bf16
step does the same FLOPs, faster only where the hardware makes it so), nor are copies (offload).
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from edgetrgl.bench.methods import bench_sgd, loss_weights
from edgetrgl.bench.setting import BenchSetting, build_net
from edgetrgl.bench.variants import parse_method
from edgetrgl.memory.estimate import build_fake
from edgetrgl.memory.work import count_work
from edgetrgl.step import local_step


def flops_per_sample(setting: BenchSetting, method: str) -> float:
    """FLOPs of one training step of ``method`` per sample: forward, backward and recomputation.

    Sequential and parallel count the same: every module's step once (sequential's cache fill, one
    more forward per module, is not counted, as its measured time per sample does not count it).
    """
    spec = parse_method(method)
    options = {"checkpoint_blocks": spec.checkpoint_blocks}  # precision changes no FLOP count
    with FakeTensorMode() as mode:
        net = build_fake(lambda: build_net(setting, method), mode)
        weights = loss_weights(method, setting, net.num_modules)
        x = torch.randn(setting.batch_shape)
        y = torch.randint(0, setting.num_classes, (setting.batch_size,))
        optimizers = [bench_sgd(list(s.parameters()) + list(h.parameters()), setting) for s, h in zip(net.stages, net.heads)]

        def step() -> None:  # one step through every module (one module for the baselines); outputs are detached
            h = x
            for k in range(net.num_modules):
                h, _ = local_step(net.stages[k], net.heads[k], optimizers[k], h, y, weights(k), 0.0, image=x, **options)

        work = count_work(step)  # the planner's counter (edgetrgl/memory/work.py)
    return work.flops / setting.batch_size
