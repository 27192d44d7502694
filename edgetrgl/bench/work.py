"""Modelled work of one training step: FLOPs counted under fake tensors (the ``--estimate`` time axis).

Recomputation is counted (checkpointing pays its second forward here); precision is not (a bf16
step does the same FLOPs, faster only where the hardware makes it so), nor are copies (offload).
Micro-batches (``+mbN``) do the same FLOPs in smaller pieces: what they cost is speed, measured.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from edgetrgl.bench.joint import joint_step
from edgetrgl.bench.methods import bench_sgd, loss_weights
from edgetrgl.bench.setting import BenchSetting, build_net
from edgetrgl.bench.variants import Method, parse_method
from edgetrgl.memory.estimate import build_fake
from edgetrgl.memory.work import count_work


def flops_per_sample(setting: BenchSetting, method: str) -> float:
    """FLOPs of one training step of ``method`` per sample: forward, backward and recomputation.

    Sequential and parallel count the same: every module's step once (sequential's cache fill, one
    more forward per module, is not counted, as its measured time per sample does not count it).
    """
    spec = parse_method(method)
    spec = Method(spec.base, spec.checkpoint_blocks, "fp32", spec.micro_batch)  # precision changes no FLOP count
    with FakeTensorMode() as mode:
        net = build_fake(lambda: build_net(setting, method), mode)
        weights = loss_weights(method, setting, net.num_modules)
        x = torch.randn(setting.batch_shape)
        y = torch.randint(0, setting.num_classes, (setting.batch_size,))
        optimizers = [bench_sgd(list(s.parameters()) + list(h.parameters()), setting) for s, h in zip(net.stages, net.heads)]
        # one step through every module (one module for the baselines); outputs are detached
        work = count_work(lambda: joint_step(net, optimizers, x, y, weights, spec))  # the planner's counter
    return work.flops / setting.batch_size
