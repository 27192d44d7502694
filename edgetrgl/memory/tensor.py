"""Tensor-level peak memory by category, measured with PyTorch's MemTracker.

MemTracker sees every tensor created inside its context (and the modules, optimizers and tensors
registered with ``track_external``), so it reports the same figure on CPU and CUDA, and also under
``FakeTensorMode``, where nothing is allocated: that is how the planner estimates without running.
"""

from __future__ import annotations

import functools
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from edgetrgl.errors import UserError

# MemTracker's category names -> ours (the wording)
CATEGORIES = {
    "PARAM": "parameters",
    "BUFFER": "buffers",
    "GRAD": "gradients",
    "ACT": "activations",
    "TEMP": "temporaries",
    "OPT": "optimizer_state",
    "OTH": "inputs",
}


def mem_tracker_class() -> type:
    """torch's MemTracker, imported on first use, or one clear error on a torch without it."""
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError as exc:  # torch < 2.5 (pyproject says so; a board's hand-installed torch may not)
        raise UserError(f"torch {torch.__version__} has no MemTracker (torch.distributed._tools.mem_tracker), "
                        f"which edgetrgl's memory estimates need: install torch >= 2.5") from exc
    return MemTracker


@functools.cache
def _peak_tracker_class() -> type:
    """``_PeakTracker``, defined on first use: importing MemTracker pulls in torch._dynamo (~1.5 s,
    tens of MiB of RSS), which ``import edgetrgl`` should not pay for."""
    MemTracker = mem_tracker_class()

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

    return _PeakTracker


def peak_tracker() -> Any:
    """A MemTracker for the global peak that accepts micro-batches' repeated forwards; its
    ``get_tracker_snapshot("peak")`` gives the peak per device (for callers that split host and device)."""
    return _peak_tracker_class()()


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
    tracker = _peak_tracker_class()()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker.track_external(*external)
        with tracker:
            fn()
    snaps = tracker.get_tracker_snapshot("peak")
    total, by_category = 0, {}
    for snap in snaps.values():
        for key, value in snap.items():
            name = CATEGORIES.get(getattr(key, "name", str(key)), str(key))
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


class _LiveStorageBytes(TorchDispatchMode):
    """Counts the bytes of live tensor storages, and their peak, while active.

    A lighter cousin of MemTracker for use inside training: it installs no module or gradient hooks.
    (MemTracker's hooks keep every module it has seen alive through C++ references, so measuring
    a step of each module leaked the whole network run after run; benchmarks/results/soak.json records the long run that found it.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = self.peak = 0
        self._live: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live:
            return
        nbytes = storage.nbytes()
        self._live[key] = nbytes
        self._refs[key] = weakref.ref(storage, lambda _, key=key: self._free(key))
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)
        self._refs.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in pytree.tree_leaves(out):
            if isinstance(value, torch.Tensor):
                self.add(value)
        return out


def track_live_peak(fn: Callable[[], Any], *external: Any) -> int:
    """Peak bytes of live tensors while ``fn()`` runs, counting ``external`` tensors from the start.

    Args:
        fn: the work to measure (one training step).
        external: modules (parameters, buffers, gradients), optimizers (their state) and tensors
            that exist before ``fn`` and count towards the peak.
    """
    counter = _LiveStorageBytes()
    for obj in external:
        if isinstance(obj, torch.nn.Module):
            for t in list(obj.parameters()) + list(obj.buffers()):
                counter.add(t)
                if t.grad is not None:
                    counter.add(t.grad)
        elif isinstance(obj, torch.optim.Optimizer):
            for state in obj.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        counter.add(value)
        elif isinstance(obj, torch.Tensor):
            counter.add(obj)
    with counter:
        fn()
    return counter.peak
