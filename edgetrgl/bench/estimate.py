"""Estimate every method's peak with fake tensors: nothing is allocated, the paper's setting takes seconds.

The joint methods (e2e, checkpoint, offload, parallel) run :func:`edgetrgl.bench.joint.joint_step`,
the step the measurement runs, under MemTracker after one warm-up step (gradients and momentum
exist: the steady state); the sequential methods are :func:`estimate_sequential` (the worst
module). Offloading is modelled as it behaves on a GPU: saved activations leave the device at once
and come back in backward, so the figure is the device-resident peak and ``host_bytes`` what waits
on the host. The sequential methods' host cache (``setting.cache_samples``) is ``cache_bytes``, and
``unified_peak_bytes`` adds it to the step where both share one RAM (a Pi, a Jetson).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from edgetrgl.bench.joint import joint_step
from edgetrgl.bench.methods import bench_sgd, input_shapes, loss_weights
from edgetrgl.bench.setting import BenchSetting, build_net
from edgetrgl.bench.variants import Method, parse_method
from edgetrgl.cache.activation_cache import STORAGE_DTYPES
from edgetrgl.memory.estimate import build_fake, estimate_sequential
from edgetrgl.memory.tensor import CATEGORIES, peak_tracker  # MemTracker's category names -> ours


def estimate_method(setting: BenchSetting, method: str) -> dict[str, Any]:
    """Fake-tensor estimate of ``method``'s peak.

    Returns:
        ``peak_bytes``, ``peak_by_category``, ``cache_bytes`` and ``unified_peak_bytes``; for the
        sequential regime ``per_module`` and ``peak_module``; for offload ``host_bytes``.
    """
    torch.manual_seed(setting.seed)
    spec = parse_method(method)
    if not spec.sequential:
        record = _estimate_joint(setting, spec)
        return {**record, "cache_bytes": 0, "unified_peak_bytes": record["peak_bytes"] + record.get("host_bytes", 0)}
    options = spec.step_options()  # checkpoint_blocks, precision and micro_batch, as the measured step takes them
    peaks = estimate_sequential(lambda: build_net(setting, method), setting.batch_shape, setting.num_classes,
                                transport=spec.transport, make_optimizer=lambda params: bench_sgd(params, setting),
                                **options)
    worst = max(range(len(peaks)), key=lambda k: peaks[k].peak_bytes)
    caches = cache_sizes(setting, method)
    # module k trains beside its inputs' cache; filling module k's outputs holds both caches
    unified = max(max(p.peak_bytes + held for p, held in zip(peaks, caches)),
                  max(a + b for a, b in zip(caches, caches[1:] + [0])))
    return {"peak_bytes": peaks[worst].peak_bytes, "peak_by_category": peaks[worst].by_category,
            "peak_module": worst + 1, "cache_bytes": max(a + b for a, b in zip(caches, caches[1:] + [0])),
            "unified_peak_bytes": unified,
            "per_module": [{"module": k + 1, "peak_bytes": p.peak_bytes, "cache_bytes": c}
                           for k, (p, c) in enumerate(zip(peaks, caches))]}


def cache_sizes(setting: BenchSetting, method: str) -> list[int]:
    """Bytes of the host cache module k reads (0 for module 1, which reads the data set)."""
    if not setting.cache_samples:
        return [0] * setting.modules
    shapes = input_shapes(build_net(setting, method), setting)
    itemsize = STORAGE_DTYPES[setting.cache_dtype].itemsize
    return [0] + [setting.cache_samples * math.prod(shape[1:]) * itemsize for shape in shapes[1:]]


def _estimate_joint(setting: BenchSetting, spec: Method) -> dict[str, Any]:
    """One warmed-up joint step on fake tensors; offload's saved tensors go to ``meta`` (the host)."""
    offload = spec.base == "offload"
    # fp16 as bf16: the same sizes, and a gradient scaler cannot step on fake tensors
    spec = Method(spec.base, spec.checkpoint_blocks, "bf16" if spec.precision == "fp16" else spec.precision,
                  spec.micro_batch)

    def pack(t: torch.Tensor) -> tuple[torch.device, torch.Tensor]:
        return t.device, t.to("meta")

    def unpack(packed: tuple[torch.device, torch.Tensor]) -> torch.Tensor:
        return torch.empty_like(packed[1], device=packed[0])  # the copy back to the device in backward

    saved = (lambda: torch.autograd.graph.saved_tensors_hooks(pack, unpack)) if offload else None
    with FakeTensorMode() as mode:
        net = build_fake(lambda: build_net(setting, spec.name), mode)
        optimizers = [bench_sgd(list(s.parameters()) + list(h.parameters()), setting) for s, h in zip(net.stages, net.heads)]
        x = torch.randn(setting.batch_shape)
        y = torch.randint(0, setting.num_classes, (setting.batch_size,))
        weights = loss_weights(spec.name, setting, net.num_modules)
        step = lambda: joint_step(net, optimizers, x, y, weights, spec, *([saved] if saved else []))  # noqa: E731
        step()  # warm-up
        tracker = peak_tracker()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracker.track_external(net, *optimizers, x, y)
            with tracker:
                step()
    host_bytes, by_category = 0, {}
    for device, snap in tracker.get_tracker_snapshot("peak").items():
        if str(device) == "meta":
            host_bytes += int(snap.get("Total", 0))
            continue
        for key, value in snap.items():
            name = "total" if key == "Total" else CATEGORIES.get(getattr(key, "name", str(key)), str(key))
            by_category[name] = by_category.get(name, 0) + int(value)
    record = {"peak_bytes": by_category.pop("total", 0), "peak_by_category": by_category}
    if offload:
        record["host_bytes"] = host_bytes
    return record
