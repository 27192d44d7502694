"""Estimate every method's peak with fake tensors: nothing is allocated, the paper's setting takes seconds.

e2e is :func:`estimate_parallel` with K = 1; ours are :func:`estimate_sequential` (the worst module)
and :func:`estimate_parallel`; checkpointing runs the same step with checkpointed blocks. Offloading
is modelled as it behaves on a GPU: saved activations leave the device at once and come back in
backward, so the figure is the device-resident peak and ``host_bytes`` what waits on the host.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from edgetrgl.bench.methods import bench_sgd, loss_weights
from edgetrgl.bench.setting import BenchSetting, build_net
from edgetrgl.bench.variants import parse_method
from edgetrgl.memory.estimate import estimate_parallel, estimate_sequential
from edgetrgl.memory.tensor import CATEGORIES, mem_tracker_class  # MemTracker's category names -> ours
from edgetrgl.step import local_step


def estimate_method(setting: BenchSetting, method: str) -> dict[str, Any]:
    """Fake-tensor estimate of ``method``'s peak.

    Returns:
        ``peak_bytes``, ``peak_by_category`` and, for the sequential regime, ``per_module`` and
        ``peak_module``; for offload ``host_bytes``. ``peak_bytes`` is None where no estimate exists.
    """
    torch.manual_seed(setting.seed)
    batch_shape, classes = setting.batch_shape, setting.num_classes
    optimizer = lambda params: bench_sgd(params, setting)  # noqa: E731  the optimizer the measurement uses
    spec = parse_method(method)
    options = spec.step_options()  # checkpoint_blocks and precision, as the measured step takes them
    build = lambda: build_net(setting, method)  # noqa: E731  called inside the fake mode
    if spec.base == "offload":
        return _estimate_offload(setting, method)
    if spec.sequential:
        peaks = estimate_sequential(build, batch_shape, classes, transport=spec.transport, make_optimizer=optimizer,
                                    **options)
        worst = max(range(len(peaks)), key=lambda k: peaks[k].peak_bytes)
        return {"peak_bytes": peaks[worst].peak_bytes, "peak_by_category": peaks[worst].by_category,
                "peak_module": worst + 1,
                "per_module": [{"module": k + 1, "peak_bytes": p.peak_bytes} for k, p in enumerate(peaks)]}
    # e2e, checkpoint (build_net wraps the blocks) and parallel: one step through every module
    peak = estimate_parallel(build, batch_shape, classes, transport=spec.transport, make_optimizer=optimizer, **options)
    return {"peak_bytes": peak.peak_bytes, "peak_by_category": peak.by_category}


def _estimate_offload(setting: BenchSetting, method: str) -> dict[str, Any]:
    """e2e with every saved activation moved off the device (to ``meta``, which stands for the host)."""

    def pack(t: torch.Tensor) -> tuple[torch.device, torch.Tensor]:
        return t.device, t.to("meta")

    def unpack(packed: tuple[torch.device, torch.Tensor]) -> torch.Tensor:
        return torch.empty_like(packed[1], device=packed[0])  # the copy back to the device in backward

    with FakeTensorMode():
        net = build_net(setting, method)
        optimizer = bench_sgd(list(net.parameters()), setting)
        x = torch.randn(setting.batch_shape)
        y = torch.randint(0, setting.num_classes, (setting.batch_size,))
        weights = loss_weights("offload", setting, 1)
        tracker = mem_tracker_class()()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracker.track_external(net, optimizer, x, y)
            with tracker, torch.autograd.graph.saved_tensors_hooks(pack, unpack):
                precision = parse_method(method).precision  # fp16 as bf16: no gradient scaler on fake tensors
                local_step(net.stages[0], net.heads[0], optimizer, x, y, weights(0), 0.0,
                           precision="bf16" if precision == "fp16" else precision)
    host_bytes = 0
    by_category: dict[str, int] = {}
    for device, snap in tracker.get_tracker_snapshot("peak").items():
        if str(device) == "meta":
            host_bytes += int(snap.get("Total", 0))
            continue
        for key, value in snap.items():
            name = "total" if key == "Total" else CATEGORIES.get(getattr(key, "name", str(key)), str(key))
            by_category[name] = by_category.get(name, 0) + int(value)
    device_bytes = by_category.pop("total", 0)
    return {"peak_bytes": device_bytes, "peak_by_category": by_category, "host_bytes": host_bytes}
