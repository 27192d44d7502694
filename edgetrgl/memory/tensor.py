"""Tensor-level peak memory by category, measured with PyTorch's MemTracker.

MemTracker sees every tensor created inside its context (and the modules, optimizers and tensors
registered with ``track_external``), so it reports the same figure on CPU and CUDA, and also under
``FakeTensorMode``, where nothing is allocated: that is how the planner estimates without running.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.distributed._tools.mem_tracker import MemTracker

# MemTracker's category names -> ours (the wording)
_CATEGORIES = {
    "PARAM": "parameters",
    "BUFFER": "buffers",
    "GRAD": "gradients",
    "ACT": "activations",
    "TEMP": "temporaries",
    "OPT": "optimizer_state",
    "OTH": "inputs",
}


class _PeakTracker(MemTracker):
    """MemTracker for the global peak only.

    MemTracker refuses a root module's second forward in one context (it assumes a new iteration);
    micro-batching calls each module once per chunk on purpose. We read only the global peak, so
    per-module statistics can simply start over.
    """

    def _pre_fw_hook(self, module, inputs) -> None:
        try:
            super()._pre_fw_hook(module, inputs)
        except NotImplementedError:
            self.reset_mod_stats()
            super()._pre_fw_hook(module, inputs)


@dataclass
class TensorPeak:
    """Peak tensor bytes during one measured call, and its breakdown at that moment."""

    peak_bytes: int
    by_category: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "by_category": dict(self.by_category)}


def track_peak(fn: Callable[[], Any], *external: Any) -> TensorPeak:
    """Run ``fn()`` under MemTracker and return the peak over all devices.

    Args:
        fn: the work to measure (for example one training step).
        external: modules, optimizers and tensors that exist before ``fn`` and count towards the
            peak (the module being trained, its optimizer, the input batch).
    """
    tracker = _PeakTracker()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker.track_external(*external)
        with tracker:
            fn()
    snaps = tracker.get_tracker_snapshot("peak")
    total, by_category = 0, {}
    for snap in snaps.values():
        for key, value in snap.items():
            name = _CATEGORIES.get(getattr(key, "name", str(key)), str(key))
            if name == "Total":
                total += int(value)
            else:
                by_category[name] = by_category.get(name, 0) + int(value)
    return TensorPeak(peak_bytes=total, by_category=by_category)


def cuda_peaks(device: torch.device) -> dict[str, int]:
    """CUDA caching-allocator peaks since the last reset, in bytes."""
    return {
        "cuda_max_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
        "cuda_max_reserved_bytes": int(torch.cuda.max_memory_reserved(device)),
    }
