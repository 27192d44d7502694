"""Step 2: every method's memory and time in a fresh process, with the fake-tensor estimate beside it.

Measuring reuses ``edgetrgl bench``'s worker (``edgetrgl.bench.worker`` through
``edgetrgl.memory.process.run_fresh``): one fresh interpreter per method, so no peak leaks from one
method into the next, and NVML's per-process figure (which never goes down inside a process) means
one thing. Estimating runs ``python -m edgetrgl bench --estimate --json F`` once per (K, split), all
at once in the background on the CPU (fake tensors need no GPU), while the GPU measures; the
memory-balanced boundaries those runs resolve are the ones the measurements use.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetrgl.bench.setting import BenchSetting, resolve_boundaries
from edgetrgl.errors import UserError
from edgetrgl.memory.process import run_fresh

WORKER = "edgetrgl.bench.worker"
OURS = ("parallel-trgl", "sequential-trgl")


@dataclass(frozen=True)
class Item:
    """One measurement: a method, and for ours the number of modules and the split."""

    method: str
    modules: int | None = None  # None: a baseline, the whole network as one module
    split: str | None = None

    @property
    def label(self) -> str:
        return self.method if self.modules is None else f"{self.method} K={self.modules} {self.split}"


def plan_items(profile) -> list[Item]:
    """In order of importance, so that a deadline cuts the least informative items: e2e, parallel and
    sequential TRGL on equal splits (the paper's comparison), the other baselines, balanced splits."""
    equal = [p for p in profile.pairs if p[1] == "equal"]
    rest = [p for p in profile.pairs if p[1] != "equal"]
    items = [Item("e2e")]
    items += [Item(m, k, s) for m in OURS for k, s in equal]
    items += [Item(b) for b in profile.baselines]
    items += [Item(m, k, s) for k, s in rest for m in OURS]
    return items


class Estimates:
    """Background ``edgetrgl bench --estimate`` processes, one per (K, split); their JSON reports."""

    def __init__(self, run) -> None:
        self.run = run
        self.procs: dict[tuple[int, str], tuple[subprocess.Popen, Path, Any]] = {}
        self.reports: dict[tuple[int, str], dict | None] = {}

    def start(self) -> None:
        p = self.run.profile
        folder = self.run.workdir / "estimates"
        folder.mkdir(parents=True, exist_ok=True)
        # balanced first: their boundaries are needed before those items can be measured
        for index, (k, split) in enumerate(sorted(p.pairs, key=lambda pair: pair[1] != "balanced")):
            compare = "e2e," + ",".join(p.baselines) if (k, split) == p.pairs[0] else "e2e"
            path = folder / f"K{k}-{split}.json"
            cmd = [self.run.python, "-m", "edgetrgl", "bench", "--estimate", "--model", p.model,
                   *[f"--model-option={key}={value}" for key, value in p.model_options.items()],
                   "--image-size", str(p.image_size), "--batch-size", str(p.batch_size), "--modules", str(k),
                   "--split", split, "--compare", compare.rstrip(","), "--json", str(path)]
            log = open(folder / f"K{k}-{split}.log", "w")
            # fake tensors compute nothing: one thread each, so the GPU worker's launch thread keeps a core
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            self.procs[(k, split)] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), path, log)

    def report(self, k: int, split: str, wait_until: float | None = None) -> dict | None:
        """The (K, split) estimate report; waits until ``wait_until`` (a ``time.monotonic`` value) at most."""
        key = (k, split)
        if key in self.reports:
            return self.reports[key]
        if key not in self.procs:
            return None
        proc, path, log = self.procs[key]
        while proc.poll() is None:
            if wait_until is None or time.monotonic() >= wait_until:
                return None
            time.sleep(0.2)
        log.close()
        self.reports[key] = json.loads(path.read_text()) if proc.returncode == 0 and path.exists() else None
        if self.reports[key] is None:
            self.run.log(f"estimate K={k} {split} failed (exit {proc.returncode}); see {path.with_suffix('.log')}")
        return self.reports[key]

    def stop(self) -> list[str]:
        """End the estimate processes still running (the deadline passed); return what they were."""
        unfinished = []
        for (k, split), (proc, _, log) in self.procs.items():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                unfinished.append(f"K={k} {split}")
            log.close()
        return unfinished


def run_memory(run) -> None:
    """Measure every item of the matrix; fill in estimates as their processes finish."""
    p = run.profile
    section = run.results.setdefault("memory", {"setting": p.setting_dict(run.device), "records": [], "skipped": []})
    estimates = Estimates(run)
    estimates.start()
    stop_at = run.deadline - p.reserve_s  # leave time for the budget and wall-time steps
    for item in plan_items(p):
        if time.monotonic() > stop_at:
            section["skipped"].append(item.label)
            run.log(f"memory: {item.label} skipped (deadline)")
            continue
        record = _measure(run, estimates, item)
        section["records"].append(record)
        fill_estimates(section["records"], estimates, p, wait_until=None)
        run.save()
        run.log(f"memory: {item.label:<26} {_summary(record)}")
    fill_estimates(section["records"], estimates, p, wait_until=run.deadline)
    unfinished = estimates.stop()
    if unfinished:
        section["estimates_unfinished"] = unfinished
    run.save()


def _measure(run, estimates: Estimates, item: Item) -> dict[str, Any]:
    p = run.profile
    k, split = item.modules or p.pairs[0][0], item.split or "equal"
    setting = BenchSetting(model=p.model, image_size=p.image_size, batch_size=p.batch_size, modules=k, split=split,
                           device=run.device, steps=p.steps, warmup=p.warmup, model_options=dict(p.model_options))
    record: dict[str, Any] = {"method": item.method, "modules": item.modules, "split": item.split, "label": item.label}
    started = time.perf_counter()
    try:
        if split == "balanced":
            report = estimates.report(k, split, wait_until=run.deadline)
            setting.boundaries = (report["setting"]["boundaries"] if report else resolve_boundaries(setting).boundaries)
        record["boundaries"] = setting.boundaries
        payload: dict[str, Any] = {"setting": setting.to_dict(), "method": item.method}
        if run.device == "cpu":
            payload["threads"] = 1  # as every child on the CPU (run.py sets OMP_NUM_THREADS)
        with run.nvml.watch() as reading:
            result = run_fresh(WORKER, payload, timeout=max(30.0, run.deadline - time.monotonic() + 30.0))
        result.pop("method", None)
        record.update(result)
        record.update(reading)
    except (RuntimeError, UserError) as exc:
        record["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        run.failures.append(f"memory {item.label}: {record['error']}")
    record["wall_s"] = round(time.perf_counter() - started, 2)
    return record


def fill_estimates(records: list[dict], estimates: Estimates, profile, wait_until: float | None) -> None:
    """Put each method's estimated peak beside its measurement (baselines: from the first pair's run)."""
    for record in records:
        if "estimate_bytes" in record:
            continue
        k, split = (record["modules"], record["split"]) if record["modules"] else profile.pairs[0]
        report = estimates.report(k, split, wait_until)
        if report is None:
            continue
        match = [r for r in report["results"] if r["method"] == record["method"]]
        record["estimate_bytes"] = match[0].get("peak_bytes") if match else None


def _summary(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"ERROR {record['error']}"
    parts = [f"tensor {_mib(record.get('peak_bytes'))}"]
    if record.get("cuda_max_reserved_bytes") is not None:
        parts += [f"alloc {_mib(record['cuda_max_allocated_bytes'])}", f"reserved {_mib(record['cuda_max_reserved_bytes'])}",
                  f"NVML proc {_mib(record.get('nvml_process_peak_bytes'))}",
                  f"NVML dev Δ {_mib(record.get('nvml_device_delta_peak_bytes'))}"]
    if record.get("time_per_sample_s") is not None:
        parts.append(f"{1e3 * record['time_per_sample_s']:.3f} ms/sample")
    return ", ".join(parts) + f" [{record['wall_s']:.1f} s]"


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f} MiB"
