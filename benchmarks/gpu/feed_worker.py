"""Fresh-process worker of the speed step: time per sample of e2e, sequential and parallel TRGL as the trainer
runs them, fed from host memory by each way of serving batches, and a torch.profiler summary of one module.

    python benchmarks/gpu/feed_worker.py --payload payload.json --out result.json   # run by _speed.py

Every figure is one epoch of ``batches`` batches (after ``warmup`` untimed steps), the clock read after a
device synchronize, one host sync per step as the trainer's loop makes (``float(ce)``):

* e2e: the whole network, one module, its inputs (the images) from a host cache;
* sequential: module k alone, its inputs (module k-1's outputs) from a host cache, k = 1..K in turn;
  the sum over modules of their epoch time (the caches' filling, one forward pass per module, is not
  counted: a module trains for tens of epochs on one fill);
* parallel: every batch through the K modules, each stepping in turn (from the same cache as e2e).

Feeds: ``device`` (the batches already on the device: the floor), ``plain`` (the prefetch thread's
copies, what edgetrgl did before the CUDA feed), ``stream`` (edgetrgl.cache.device_feed on CUDA:
pinned staging, side stream, one ahead), ``stream-nosync`` (the same without the per-step host sync:
what that sync costs). Values are random: memory and speed do not depend on them.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable

import torch

from edgetrgl.bench.methods import input_shapes, loss_weights
from edgetrgl.bench.setting import BenchSetting, build_net
from edgetrgl.cache import ActivationCache, device_feed
from edgetrgl.memory.process import worker_main
from edgetrgl.step import local_step, make_sgd

FEEDS = ("device", "plain", "stream", "stream-nosync")


def measure(payload: dict[str, Any]) -> dict[str, Any]:
    """Payload: ``settings`` (BenchSetting dicts, boundaries resolved), ``batches``, ``warmup``, ``feeds``,
    ``deadline_s`` (seconds from now), ``profile`` (index into settings of the K to profile, or None),
    ``threads`` (optional). Returns ``{"e2e": {feed: s/sample}, "rows": [...], "profile": {...}, "stopped": bool}``."""
    if "threads" in payload:
        torch.set_num_threads(int(payload["threads"]))
    deadline = time.monotonic() + float(payload["deadline_s"])
    settings = [BenchSetting.from_dict(s) for s in payload["settings"]]
    feeds = [f for f in payload.get("feeds", FEEDS) if f in FEEDS]
    batches, warmup = int(payload["batches"]), int(payload["warmup"])
    device = torch.device(settings[0].device)
    if device.type == "cuda":
        torch.zeros(1, device=device)  # the CUDA context first: not part of any timing
        torch.backends.cudnn.benchmark = False  # the trainer's setting
    result: dict[str, Any] = {"feeds": feeds, "batches": batches, "warmup": warmup, "e2e": {}, "rows": [],
                              "stopped": False}
    torch.manual_seed(0)
    first = settings[0]
    caches: dict[tuple[int, ...], ActivationCache] = {}  # by input shape: most modules share one

    def cache(shape) -> ActivationCache:
        if tuple(shape) not in caches:
            caches[tuple(shape)] = _cache(tuple(shape), batches, first.num_classes)
        return caches[tuple(shape)]

    def out_of_time() -> bool:
        result["stopped"] = result["stopped"] or time.monotonic() > deadline
        return result["stopped"]

    e2e = build_net(first, "e2e")
    for feed in feeds:
        if out_of_time():
            return result
        seconds = _modules_epoch(e2e, [0], cache(first.batch_shape), first, "e2e", feed, batches, warmup)
        result["e2e"][feed] = seconds / (batches * first.batch_size)
    for index, setting in enumerate(settings):
        net = build_net(setting, "sequential-trgl")
        shapes = input_shapes(net, setting)
        row: dict[str, Any] = {"modules": setting.modules, "split": setting.split, "boundaries": setting.boundaries,
                               "sequential_per_module": {f: [] for f in feeds}, "parallel": {}}
        result["rows"].append(row)
        for k in range(net.num_modules):  # module by module, every feed in turn: like for like
            for feed in feeds:
                if out_of_time():
                    return result
                seconds = _modules_epoch(net, [k], cache(shapes[k]), setting, "sequential-trgl", feed, batches, warmup)
                row["sequential_per_module"][feed].append(seconds / (batches * setting.batch_size))
        row["sequential"] = {f: sum(times) for f, times in row["sequential_per_module"].items()}
        for feed in [f for f in feeds if f in ("device", "stream")]:
            if out_of_time():
                return result
            seconds = _modules_epoch(net, list(range(net.num_modules)), cache(shapes[0]), setting, "parallel-trgl", feed,
                                     batches, warmup)
            row["parallel"][feed] = seconds / (batches * setting.batch_size)
        if payload.get("profile") == index and not out_of_time():
            result["profile"] = _profile(net, [cache(shape) for shape in shapes], setting, batches, device)
    return result


def _cache(shape: tuple[int, ...], batches: int, num_classes: int) -> ActivationCache:
    """A host cache of ``batches`` batches of random inputs of ``shape`` (batch first), fp32 (the default)."""
    n = batches * shape[0]
    cache = ActivationCache(n, backend="host", storage_dtype="fp32", shard_size=max(n, 1))
    x, y = torch.randn(shape), torch.randint(0, num_classes, (shape[0],))  # one batch, repeated: cheap to make
    for _ in range(batches):
        cache.append(0, x, y)
    cache.finish()
    return cache


def _serve(cache: ActivationCache, setting: BenchSetting, feed: str, device: torch.device,
           resident: list | None) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if feed == "device":
        return resident
    device_feed.FEED = "plain" if feed == "plain" else "auto" if device.type == "cuda" else "stream"
    try:
        return iter(device_feed.feed(cache, setting.batch_size, device))
    finally:
        device_feed.FEED = "auto"


def _modules_epoch(net, modules: list[int], cache: ActivationCache, setting: BenchSetting, method: str, feed: str,
                   batches: int, warmup: int) -> float:
    """Seconds for one epoch of ``modules`` (one: e2e or a sequential module; all: parallel) fed by ``feed``."""
    device = torch.device(setting.device)
    weights = loss_weights(method, setting, net.num_modules)
    parts = [(net.stages[k].to(device).train(), net.heads[k].to(device).train()) for k in modules]
    optimizers = [make_sgd(list(s.parameters()) + list(h.parameters()), setting.lr) for s, h in parts]
    resident = [(x.to(device), y.to(device)) for x, y in cache.batches(setting.batch_size)] if feed == "device" else None
    sync_each_step = feed != "stream-nosync"

    def step(x, y) -> None:
        ces = []
        for (stage, head), optimizer, k in zip(parts, optimizers, modules):
            x, res = local_step(stage, head, optimizer, x, y, weights(k), 0.0)
            ces.append(res.ce)
        if sync_each_step:
            for ce in ces:
                float(ce)  # the trainer's one host sync per step and module (training/epoch.py's Tally)

    warm = iter(_serve(cache, setting, feed, device, resident))
    for _, (x, y) in zip(range(warmup), warm):
        step(x, y)
    del warm
    _sync(device)
    started = time.perf_counter()
    for x, y in _serve(cache, setting, feed, device, resident):
        step(x, y)
    _sync(device)
    seconds = time.perf_counter() - started
    for stage, head in parts:
        stage.cpu(), head.cpu()
    del resident, optimizers
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the next module starts alone, as in training
    return seconds


def _profile(net, caches: list[ActivationCache], setting: BenchSetting, batches: int, device: torch.device) -> dict:
    """torch.profiler over one epoch of sequential module 2 (it reads a cache), plain feed and then stream."""
    from torch.profiler import ProfilerActivity, profile

    k = 1 if net.num_modules > 1 else 0
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    out: dict[str, Any] = {"module": k + 1, "modules": setting.modules, "split": setting.split, "sort": sort}
    for feed in ("plain", "stream"):
        with profile(activities=activities) as prof:
            seconds = _modules_epoch(net, [k], caches[k], setting, "sequential-trgl", feed, batches, warmup=1)
        averages = prof.key_averages()
        copies = [e for e in averages if "memcpy" in e.key.lower() or e.key in ("aten::copy_", "aten::_to_copy")]
        out[feed] = {"epoch_s": seconds, "table": averages.table(sort_by=sort, row_limit=12, max_name_column_width=48),
                     "copies": [{"name": e.key, "count": e.count, "self_cpu_us": e.self_cpu_time_total,
                                 "device_us": _device_time(e)} for e in copies]}
    return out


def _device_time(event) -> float | None:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    sys.exit(worker_main(measure))
