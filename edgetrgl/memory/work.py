"""What a step asks of the machine, counted without running it: FLOPs, bytes written, ops dispatched.

Counted under ``FakeTensorMode`` beside the memory estimate (see ``estimate.py``), so a plan's time
can be modelled in the same seconds the planner spends on its memory (``planning/speed.py``). FLOPs
are torch's own formulas (matrix products and convolutions); bytes are what every op writes (a
lower bound on memory traffic, which dominates elementwise layers such as BatchNorm and ReLU at
high resolution); ops count the fixed cost of dispatching each one, which micro-batching multiplies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Work:
    flops: int = 0
    bytes_written: int = 0
    ops: int = 0

    def __add__(self, other: "Work") -> "Work":
        return Work(self.flops + other.flops, self.bytes_written + other.bytes_written, self.ops + other.ops)

    def scaled(self, factor: float) -> "Work":
        return Work(int(self.flops * factor), int(self.bytes_written * factor), int(self.ops * factor))

    def to_dict(self) -> dict[str, int]:
        return {"flops": self.flops, "bytes_written": self.bytes_written, "ops": self.ops}


class _Traffic(TorchDispatchMode):
    """Bytes of every op's outputs (views write nothing) and the number of ops."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes_written = self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "prim":  # a metadata query (FakeTensorMode asks ``prim.device`` often), not a kernel
            return out
        self.ops += 1
        if not func.is_view:
            for value in pytree.tree_leaves(out):
                if isinstance(value, torch.Tensor):
                    self.bytes_written += value.numel() * value.element_size()
        return out


def count_work(fn: Callable[[], Any]) -> Work:
    """Run ``fn()`` (on fake or real tensors) and count its work."""
    with FlopCounterMode(display=False) as flops, _Traffic() as traffic:
        fn()
    return Work(int(flops.get_total_flops()), traffic.bytes_written, traffic.ops)


@dataclass(frozen=True)
class MachineSpeed:
    """A device's rates for the time model: ``seconds = flops / F + bytes / B + ops * L``."""

    flops_per_s: float
    bytes_per_s: float
    seconds_per_op: float
    source: str = ""  # where the figures come from (fitted here, or a data sheet)

    def seconds(self, work: Work) -> float:
        return work.flops / self.flops_per_s + work.bytes_written / self.bytes_per_s + work.ops * self.seconds_per_op
