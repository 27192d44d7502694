"""Run a comparison: every method measured in its own fresh process (or estimated), then the ratios to e2e."""

from __future__ import annotations

import datetime
import time
from typing import Any

from rich.console import Console

from edgetrgl.bench.pareto import mark_front
from edgetrgl.bench.setting import BenchSetting, build_blocknet, resolve_boundaries, versions
from edgetrgl.bench.variants import parse_method
from edgetrgl.memory.device import device_memory_snapshot
from edgetrgl.memory.process import run_fresh
from edgetrgl.modular import split_blocks

WORKER = "edgetrgl.bench.worker"


def run_bench(setting: BenchSetting, methods: list[str], estimate: bool = False, console: Console | None = None,
              timeout_s: float | None = None, threads: int | None = None) -> dict[str, Any]:
    """Measure (or estimate) every method in ``methods`` on ``setting``; e2e must be first.

    Args:
        setting: the benchmark setting (``device`` already resolved to cpu or cuda).
        methods: method names, see :data:`BASELINES` and :data:`OURS`, with step options
            (``sequential-trgl+ckpt``: :mod:`edgetrgl.bench.variants`).
        estimate: fake tensors instead of running (memory and FLOPs, no times).
        console: where progress lines go (stderr by default).
        timeout_s: per-method limit for a measuring worker.
        threads: torch threads in each worker (default: torch's choice).

    Returns:
        ``{"setting", "mode", "versions", "device_memory", "notes", "results": [...], "date", "pareto"}``;
        every result has ``method``, ``peak_bytes``, ``peak_rss_bytes``, ``samples_per_s``,
        ``savings_vs_e2e`` (None where it does not apply) and ``on_pareto_front``; estimated results
        have ``flops_per_sample``. ``pareto`` names the axes and the front (:func:`mark_front`).

    Raises:
        UserError: bad setting (unknown model, K above the number of blocks, split unavailable).
    """
    if methods[0] != "e2e":
        raise ValueError("e2e must come first: every ratio is taken against it")
    console = console or Console(stderr=True)
    for method in methods:  # +mbN must leave several micro-batches, before minutes of measuring
        parse_method(method).check_batch(setting.batch_size)
    setting = resolve_boundaries(setting)  # validates the model and K before any worker starts
    results = []
    for method in methods:
        started = time.perf_counter()
        if estimate:
            record = _estimate(setting, method)
        else:
            payload: dict[str, Any] = {"setting": setting.to_dict(), "method": method}
            if threads:
                payload["threads"] = threads
            record = run_fresh(WORKER, payload, timeout=timeout_s)
        record["method"] = method
        for key in ("peak_rss_bytes", "samples_per_s", "time_per_sample_s", "cache_bytes"):
            record.setdefault(key, None)
        console.print(f"  {method:<26} {'estimated' if estimate else 'measured in a fresh process'} "
                      f"({time.perf_counter() - started:.1f} s)")
        results.append(record)
    add_ratios(results)
    num_blocks = len(build_blocknet(setting).blocks)
    setting_out = {**setting.to_dict(), "num_blocks": num_blocks,
                   "block_ranges": split_blocks(num_blocks, setting.modules, setting.boundaries)}
    return mark_front({"setting": setting_out, "mode": "estimate" if estimate else "measured",
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "versions": versions(setting.device), "device_memory": device_memory_snapshot(),
                       "notes": notes(setting, methods, estimate), "results": results})


def _estimate(setting: BenchSetting, method: str) -> dict[str, Any]:
    from edgetrgl.bench.estimate import estimate_method
    from edgetrgl.bench.work import flops_per_sample

    spec = parse_method(method)
    try:
        return {**estimate_method(setting, method), "flops_per_sample": flops_per_sample(setting, method)}
    except Exception as exc:  # noqa: BLE001  the error text goes into the record
        if not spec.is_baseline or spec.base == "e2e":
            raise
        # checkpoint and offload under fake tensors: n/a rather than no table if torch refuses
        return {"peak_bytes": None, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Add ``savings_vs_e2e`` (1 - peak / e2e peak), ``rss_savings_vs_e2e``, ``time_vs_e2e`` (time per
    sample / e2e's) and, on CUDA, ``cuda_savings_vs_e2e``, to every record; ``results[0]`` is e2e."""
    e2e = results[0]
    pairs = {"savings_vs_e2e": "peak_bytes", "rss_savings_vs_e2e": "peak_rss_bytes",
             "cuda_savings_vs_e2e": "cuda_max_allocated_bytes"}
    for record in results:
        for name, key in pairs.items():
            mine, ref = record.get(key), e2e.get(key)
            if key in e2e or name == "savings_vs_e2e":
                record[name] = 1.0 - mine / ref if mine is not None and ref else None
        mine, ref = record.get("time_per_sample_s"), e2e.get("time_per_sample_s")
        record["time_vs_e2e"] = mine / ref if mine is not None and ref else None


def notes(setting: BenchSetting, methods: list[str], estimate: bool) -> list[str]:
    """What a reader must know to read the table right."""
    lines = []
    if estimate:
        lines.append("estimated with fake tensors (FakeTensorMode + MemTracker): nothing was allocated or timed")
        lines.append("work: FLOPs of one step per sample (FlopCounterMode; recomputation counted, bf16 counts as fp32); "
                     "the Pareto front is over peak and work")
        if "offload" in methods:
            lines.append("offload: peak resident on the accelerator, saved activations held on the host "
                         "(host_bytes in the JSON)")
    else:
        lines.append("tensor peak: MemTracker over one training step after warm-up; RSS: peak above the "
                     "fresh process's own baseline (after imports and model build)")
        if "offload" in methods and setting.device == "cpu":
            lines.append("offload: on a CPU device save_on_cpu only copies saved activations within host "
                         "memory, so it saves nothing here; it helps on a GPU")
        lines.append("sequential: time per sample = sum over modules of the median module step / batch; each "
                     "module's input is a random batch of its input shape, as the activation cache serves it")
        lines.append("the Pareto front (*) is over tensor peak and time per sample: no other method is both smaller "
                     "and faster")
    if any(parse_method(m).micro_batch for m in methods):
        lines.append("+mbN: micro-batches of N samples whose gradients accumulate to the batch's before one optimizer "
                     "step (exact, but BatchNorm normalises each micro-batch); only one micro-batch's activations live")
    if setting.cache_samples and any(parse_method(m).sequential for m in methods):
        where = ("step + cache: the worst of a module's step beside its inputs' cache, and a cache fill (its inputs' "
                 "and outputs' caches); where the cache shares the RAM of the step (a Pi, a Jetson) this must fit"
                 if estimate else "RSS counts the host cache, kept in the measuring process (a Pi, a Jetson: the same RAM)")
        lines.append(f"sequential: host cache of {setting.cache_samples:,} samples ({setting.cache_dtype}) of each "
                     f"module's inputs; {where}")
    elif not estimate and any(parse_method(m).sequential for m in methods):
        lines.append("sequential: the host cache of module outputs is not counted (--cache-samples 0); "
                     "give --cache-samples to count it in RSS")
    if setting.split == "balanced":
        lines.append(f"memory-balanced split: modules 2..K start at blocks {setting.boundaries}")
    return lines
