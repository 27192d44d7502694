"""``--budget``: one meaning, applied in one place.

The budget is **the bytes of the compute device's memory that the run may fill**.

* On a dedicated GPU that is GPU memory: the tensors of the module being trained (weights,
  gradients, optimizer state, activations, the input batch), enforced by the caching allocator
  (``set_per_process_memory_fraction``), so a step that would exceed it raises instead of growing.
* Where the device's memory is shared with the CPU (the CPU itself, a Jetson, a Raspberry Pi) the
  same DRAM also holds the host activation cache and frozen modules kept in RAM, so those count
  against the budget too: the plan moves the cache to disk when it does not fit beside the module.

The planner chooses modules and micro-batches so that every module's estimated tensors fit; the
trainer checks each module's measured peak against it (:meth:`Budget.check`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgetrgl.config import format_bytes
from edgetrgl.errors import UserError
from edgetrgl.planning.device import MemoryKind


class BudgetExceeded(UserError):
    """The run needs more memory than ``--budget`` allows."""


ADVICE = "raise --budget, or use more --modules, --split balanced or a smaller --micro-batch / --batch-size"


@dataclass(frozen=True)
class Budget:
    """The budget in bytes (None: unlimited) and the kind of memory it limits."""

    bytes: int | None
    memory_kind: MemoryKind

    @property
    def limited(self) -> bool:
        return self.bytes is not None

    def describe(self) -> str:
        if self.bytes is None:
            return "no budget"
        where = "GPU memory" if self.memory_kind == "dedicated" else "memory shared with the CPU (tensors and host cache)"
        return f"{format_bytes(self.bytes)} ({self.bytes / 1e9:.3g} GB) of {where}"

    def fraction(self, used: int) -> float | None:
        return None if self.bytes is None else used / self.bytes

    def check(self, peak: int, what: str) -> None:
        """Raise :class:`BudgetExceeded` if ``what`` measured ``peak`` bytes of tensors over the budget."""
        if self.bytes is not None and peak > self.bytes:
            raise BudgetExceeded(f"{what} needs {format_bytes(peak)} of tensors, over the budget of "
                                 f"{format_bytes(self.bytes)} ({self.bytes / 1e9:.3g} GB): {ADVICE}")

    def out_of_memory(self, device: torch.device) -> BudgetExceeded:
        """The one message for an allocator out-of-memory error."""
        within = f" within the budget of {format_bytes(self.bytes)}" if self.bytes is not None else ""
        return BudgetExceeded(f"out of memory on {device}{within}: use more --modules, --split balanced "
                              f"or a smaller --micro-batch / --batch-size")

    def limit_cuda(self, device: torch.device) -> None:
        """On CUDA the caching allocator enforces the budget: it raises OOM past this fraction."""
        if self.bytes is None or device.type != "cuda":
            return
        index = device.index if device.index is not None else torch.cuda.current_device()  # "cuda" has no index
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, self.bytes / total), index)
