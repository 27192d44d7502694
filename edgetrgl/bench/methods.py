"""Measure one method in this process: tensor-level peak of one step, and step times.

Every method trains with :func:`edgetrgl.step.local_step` and SGD with momentum 0.9, the
code the trainer runs, with the method's step options (``+ckpt``, ``+bf16``, ``+mbN``:
:mod:`edgetrgl.bench.variants`); the joint methods through :func:`edgetrgl.bench.joint.joint_step`.
The sequential methods keep their host cache (``setting.cache_samples`` samples of the module's
input, and while the next module's is filled, of its output too) in this process, so the peak RSS
counts it as a Pi or a Jetson would, where that cache shares the RAM of the training step.
Inputs are random tensors: memory and speed do not depend on the values.
The order is: warm-up steps (never timed), timed steps, the process's peak RSS, then one step under
MemTracker (never timed, and after the RSS reading: the tracker's own bookkeeping adds to RSS).
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from typing import Any, Callable

import torch

from edgetrgl.bench.joint import joint_step, offload_hooks
from edgetrgl.bench.setting import BenchSetting
from edgetrgl.bench.variants import parse_method
from edgetrgl.cache.activation_cache import STORAGE_DTYPES
from edgetrgl.losses import TauSchedule
from edgetrgl.memory.process import RssBaseline
from edgetrgl.memory.tensor import cuda_peaks, track_peak
from edgetrgl.modular import ModularNet
from edgetrgl.objectives import objective_of
from edgetrgl.step import local_step, make_sgd


def bench_sgd(params: list[torch.nn.Parameter], setting: BenchSetting) -> torch.optim.Optimizer:
    """The trainer's SGD (momentum 0.9: the momentum buffers count in the peak)."""
    return make_sgd(params, setting.lr)


def loss_weights(method: str, setting: BenchSetting, num_modules: int) -> Callable[[int], tuple[float, float]]:
    """Per-module (CE, transport) weights: the paper's doubled tau for TRGL, no transport otherwise."""
    return TauSchedule("double", setting.tau, num_modules, transport=parse_method(method).transport).weights


def measure_method(setting: BenchSetting, method: str, net: ModularNet, baseline: RssBaseline | None = None) -> dict[str, Any]:
    """Measure ``method`` on ``net`` (built by :func:`build_net` for that method).

    Args:
        baseline: the process's RSS baseline; its reading is taken before the MemTracker step.

    Returns:
        ``peak_bytes`` and ``peak_by_category`` (MemTracker, one step after warm-up), ``step_times_s``,
        ``time_per_sample_s`` and ``samples_per_s`` (median step), ``peak_rss_bytes`` (with a
        baseline), CUDA peaks on CUDA, and for the sequential regime a ``per_module`` list.
    """
    device = torch.device(setting.device)
    spec = parse_method(method)
    if spec.sequential:
        return _measure_sequential(setting, method, net, device, baseline)
    net.to(device).train()
    weights = loss_weights(method, setting, net.num_modules)
    optimizers = [bench_sgd(list(s.parameters()) + list(h.parameters()), setting) for s, h in zip(net.stages, net.heads)]
    x = torch.randn(setting.batch_shape, device=device)
    y = torch.randint(0, setting.num_classes, (setting.batch_size,), device=device)
    saved = offload_hooks(device) if spec.base == "offload" else nullcontext

    def step() -> None:
        joint_step(net, optimizers, x, y, weights, spec, saved)

    _reset_cuda(device)
    result = _times(step, setting, device)
    if device.type == "cuda":
        result.update(cuda_peaks(device))  # before the tracked step, as RSS
    if baseline is not None:
        result.update(baseline.to_dict())
    result.update(_tracked(step, 0, net, *optimizers, x, y))
    return result


def _measure_sequential(setting: BenchSetting, method: str, net: ModularNet, device: torch.device,
                        baseline: RssBaseline | None) -> dict[str, Any]:
    """Each module alone on the device, fed a random batch of its input shape (what the cache serves).

    Two passes: the first times every module (then RSS is read), the second tracks each module's
    peak with MemTracker after at least one warm-up step (as the timed steps precede it elsewhere).
    """
    weights = loss_weights(method, setting, net.num_modules)
    options = parse_method(method).step_options()
    shapes = input_shapes(net, setting)
    per_module, extra = [], {}
    cache, cache_peak = None, 0  # module k's inputs for every cached sample, in host memory
    for k in range(net.num_modules):
        per_module.append({"module": k + 1, **_module_alone(net, k, shapes[k], weights(k), setting, device, options, track=False)})
        if device.type == "cuda":
            for key, value in cuda_peaks(device).items():
                extra[key] = max(extra.get(key, 0), value)
        if k + 1 < net.num_modules and setting.cache_samples:
            # the fill: module k's outputs are written while its inputs' cache is still held
            filled = host_cache(setting, shapes[k + 1])
            cache_peak = max(cache_peak, filled.nbytes + (0 if cache is None else cache.nbytes))
            cache = filled
    del cache  # before the tracked pass: MemTracker counts the step's tensors, RSS the whole process
    if baseline is not None:
        extra.update(baseline.to_dict())
    extra["cache_bytes"] = cache_peak
    for k in range(net.num_modules):
        per_module[k].update(_module_alone(net, k, shapes[k], weights(k), setting, device, options, track=True))
    worst = max(per_module, key=lambda r: r["peak_bytes"])
    seconds = sum(r["time_per_batch_s"] for r in per_module)  # one batch through every module, in turn
    return {
        "peak_bytes": worst["peak_bytes"], "peak_by_category": worst["peak_by_category"], "peak_module": worst["module"],
        "time_per_batch_s": seconds, "time_per_sample_s": seconds / setting.batch_size,
        "samples_per_s": setting.batch_size / seconds, "per_module": per_module, **extra,
    }


def _module_alone(net: ModularNet, k: int, shape: tuple[int, ...], weights: tuple[float, float],
                  setting: BenchSetting, device: torch.device, options: dict[str, Any], track: bool) -> dict[str, Any]:
    """Put module k (and its head and optimizer) alone on the device; time it, or track one step.

    Everything made here is released on return, before the next module arrives, as in training.
    """
    stage, head = net.stages[k].to(device).train(), net.heads[k].to(device).train()
    optimizer = bench_sgd(list(stage.parameters()) + list(head.parameters()), setting)
    x = torch.randn(shape, device=device)
    y = torch.randint(0, setting.num_classes, (setting.batch_size,), device=device)
    objective = objective_of(head)
    # the images the cache serves beside module k's inputs, for objectives that read them (InfoPro)
    images = (torch.rand(setting.batch_shape, device=device),) if objective is not None and objective.needs_image else ()

    def step() -> None:
        local_step(stage, head, optimizer, x, y, weights, 0.0, image=images[0] if images else None, keep_output=False,
                   **options)

    # in both passes: the previous module's cached blocks go back to the driver, so the process's
    # device memory (what NVML and nvidia-smi see) holds one module at a time, as in training
    _reset_cuda(device)
    if track:
        record = _tracked(step, max(1, setting.warmup), stage, head, optimizer, x, y, *images)
    else:
        record = _times(step, setting, device)
    stage.to("cpu"), head.to("cpu")  # the finished module leaves the device
    return record


def host_cache(setting: BenchSetting, shape: tuple[int, ...]) -> torch.Tensor:
    """A host tensor the size of the activation cache of inputs of ``shape`` (one batch's), every
    page written: an untouched allocation would not be resident, and RSS would not see it."""
    dtype = STORAGE_DTYPES[setting.cache_dtype]
    return torch.empty((setting.cache_samples, *shape[1:]), dtype=dtype).fill_(1.0)


@torch.no_grad()
def input_shapes(net: ModularNet, setting: BenchSetting) -> list[tuple[int, ...]]:
    """The input shape of every module for one batch (module 1: the images)."""
    x = torch.zeros(2, setting.in_channels, setting.image_size, setting.image_size)
    shapes = []
    for stage in net.stages:
        shapes.append((setting.batch_size, *x.shape[1:]))
        was_training = stage.training
        x = stage.eval()(x)  # eval: shape probing must not move BatchNorm statistics
        stage.train(was_training)
    return shapes


def _times(step: Callable[[], Any], setting: BenchSetting, device: torch.device) -> dict[str, Any]:
    """Warm up, then time ``setting.steps`` steps; report the median."""
    for _ in range(setting.warmup):
        step()
    times = []
    for _ in range(setting.steps):
        _sync(device)  # the clock must not start while earlier kernels still run
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {"step_times_s": times, "time_per_batch_s": median, "time_per_sample_s": median / setting.batch_size,
            "samples_per_s": setting.batch_size / median}


def _tracked(step: Callable[[], Any], warmup: int, *external: Any) -> dict[str, Any]:
    """``warmup`` untracked steps, then one step under MemTracker: its peak and breakdown."""
    for _ in range(warmup):
        step()
    peak = track_peak(step, *external)
    return {"peak_bytes": peak.peak_bytes, "peak_by_category": peak.by_category}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_cuda(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()  # blocks cached for the previous module must not count as reserved
        torch.cuda.reset_peak_memory_stats(device)
