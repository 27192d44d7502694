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
    """The profile's memory items, in its order (of importance: a deadline cuts the last ones)."""
    return [Item(method, k, split) for method, k, split in profile.memory_items]


def estimate_pairs(profile) -> list[tuple[int, str]]:
    """Every (K, split) an estimate is needed for: the memory items' and the speed step's, balanced first
    (their boundaries are needed before those items can be measured)."""
    pairs = list(dict.fromkeys([*profile.speed_pairs, *((k, s) for _, k, s in profile.memory_items if k)]))
    return sorted(pairs, key=lambda pair: pair[1] != "balanced")


def baseline_pair(profile) -> tuple[int, str]:
    """The (K, split) whose estimate run also estimates the baselines (they do not depend on K)."""
    return next(((k, s) for _, k, s in profile.memory_items if k), profile.speed_pairs[0])


# the memory-balanced split alone, in a process of its own: the speed and memory steps need it long before
# the estimates of every method (a minute of fake tensors for ResNet-110 at 96x96) are done
_BOUNDARIES = ("import json, sys\n"
               "from edgetrgl.bench.setting import BenchSetting, resolve_boundaries\n"
               "setting = resolve_boundaries(BenchSetting.from_dict(json.loads(sys.argv[1])))\n"
               "open(sys.argv[2], 'w').write(json.dumps(setting.boundaries))\n")


class Estimates:
    """Background processes on the CPU: the balanced boundaries of every (K, balanced), and
    ``edgetrgl bench --estimate`` of every (K, split); their results."""

    def __init__(self, run) -> None:
        self.run = run
        self.procs: dict[tuple[int, str], tuple[subprocess.Popen, Path, Any]] = {}
        self.reports: dict[tuple[int, str], dict | None] = {}
        self.splits: dict[tuple[int, str], tuple[subprocess.Popen, Path, BenchSetting]] = {}

    def start(self) -> None:
        p = self.run.profile
        folder = self.run.workdir / "estimates"
        folder.mkdir(parents=True, exist_ok=True)
        # fake tensors compute nothing: one thread each, so the GPU worker's launch thread keeps a core
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for k, split in estimate_pairs(p):
            if split == "balanced":
                setting = BenchSetting(model=p.model, image_size=p.image_size, batch_size=p.batch_size, modules=k,
                                       split=split, model_options=dict(p.model_options))
                path = folder / f"K{k}-{split}-boundaries.json"
                cmd = [self.run.python, "-c", _BOUNDARIES, json.dumps(setting.to_dict()), str(path)]
                self.splits[(k, split)] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                            env=env), path, setting)
        # balanced first: their boundaries are needed before those items can be measured
        baselines = [m for m, k, _ in p.memory_items if k is None and m != "e2e"]
        for k, split in estimate_pairs(p):
            variants = [m for m, mk, ms in p.memory_items if (mk, ms) == (k, split) and "+" in m]
            compare = ",".join(["e2e", *(baselines if (k, split) == baseline_pair(p) else []), *variants])
            path = folder / f"K{k}-{split}.json"
            cmd = [self.run.python, "-m", "edgetrgl", "bench", "--estimate", "--model", p.model,
                   *[f"--model-option={key}={value}" for key, value in p.model_options.items()],
                   "--image-size", str(p.image_size), "--batch-size", str(p.batch_size), "--modules", str(k),
                   "--split", split, "--compare", compare, "--json", str(path)]
            log = open(folder / f"K{k}-{split}.log", "w")
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

    def boundaries(self, k: int, split: str, wait_until: float | None = None) -> list[int] | None:
        """The module boundaries of (K, split): None for an equal split; for a balanced one from its own
        process (waited for until ``wait_until``), else computed here."""
        if split != "balanced":
            return None
        if self.reports.get((k, split)):
            return self.reports[(k, split)]["setting"]["boundaries"]
        proc, path, setting = self.splits.get((k, split), (None, None, None))
        while proc is not None and proc.poll() is None and wait_until is not None and time.monotonic() < wait_until:
            time.sleep(0.2)
        if proc is not None and proc.poll() == 0 and path.exists():
            return json.loads(path.read_text())
        self.run.log(f"boundaries K={k} {split}: computing them here (their process had not finished)")
        return resolve_boundaries(setting or BenchSetting(model=self.run.profile.model, image_size=self.run.profile.image_size,
                                                          batch_size=self.run.profile.batch_size, modules=k, split=split,
                                                          model_options=dict(self.run.profile.model_options))).boundaries

    def stop(self) -> list[str]:
        """End the estimate processes still running (the deadline passed); return what they were."""
        for proc, _, _ in self.splits.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        unfinished = []
        for (k, split), (proc, _, log) in self.procs.items():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                unfinished.append(f"K={k} {split}")
            log.close()
        return unfinished


def run_memory(run) -> None:
    """Measure every item of the matrix until the step's deadline; fill in estimates as their processes finish;
    then the Pareto chart of one (K, split)."""
    p = run.profile
    section = run.results.setdefault("memory", {"setting": p.setting_dict(run.device), "records": [], "skipped": []})
    estimates = run.estimates
    for item in plan_items(p):
        if time.monotonic() > run.part_deadline:
            section["skipped"].append(item.label)
            run.log(f"memory: {item.label} skipped (deadline)")
            continue
        record = _measure(run, estimates, item)
        section["records"].append(record)
        fill_estimates(section["records"], estimates, p, wait_until=None)
        run.save()
        run.log(f"memory: {item.label:<34} {_summary(record)}")
    fill_estimates(section["records"], estimates, p, wait_until=run.part_deadline)
    run.save()
    run.results["pareto"] = pareto_chart(run, section["records"])


def pareto_chart(run, records: list[dict]) -> dict[str, Any]:
    """Every measured method at the profile's Pareto (K, split), baselines included: the front, and the chart
    (``<results>/<name>-pareto.png``, if matplotlib is installed)."""
    from edgetrgl.bench.pareto import mark_front

    p = run.profile
    k, split = p.pareto_pair
    chosen = [r for r in records if "error" not in r and (r["modules"] is None or (r["modules"], r["split"]) == (k, split))]
    setting = BenchSetting(model=p.model, image_size=p.image_size, batch_size=p.batch_size, modules=k, split=split,
                           device=run.device, model_options=dict(p.model_options)).to_dict()
    report = {"setting": setting, "mode": "measured",
              "results": [{"method": r["method"], "peak_bytes": r.get("peak_bytes"), "time_per_sample_s": r.get("time_per_sample_s"),
                           "cuda_max_reserved_bytes": r.get("cuda_max_reserved_bytes")} for r in chosen]}
    section: dict[str, Any] = {"modules": k, "split": split}
    if len(report["results"]) < 2:
        section.update(status="skipped", reason="fewer than two methods measured at this K")
        return section
    mark_front(report)
    section.update(front=report["pareto"]["front"], points=report["results"], status="done")
    png = run.json_path.parent / f"{run.json_path.stem}-pareto.png"
    try:
        from edgetrgl.bench import write_plot

        write_plot(report, png)
        section["png"] = png.name
    except (ImportError, UserError) as exc:  # no matplotlib on the GPU machine: the front is still recorded
        section["png_error"] = str(exc).splitlines()[0]
    run.log(f"pareto: K={k} {split}: front {', '.join(section['front'])}; chart {section.get('png', section.get('png_error'))}")
    return section


def _measure(run, estimates: Estimates, item: Item) -> dict[str, Any]:
    p = run.profile
    k, split = (item.modules, item.split) if item.modules else (baseline_pair(p)[0], "equal")
    setting = BenchSetting(model=p.model, image_size=p.image_size, batch_size=p.batch_size, modules=k, split=split,
                           device=run.device, steps=p.steps, warmup=p.warmup, model_options=dict(p.model_options))
    record: dict[str, Any] = {"method": item.method, "modules": item.modules, "split": item.split, "label": item.label}
    started = time.perf_counter()
    try:
        setting.boundaries = estimates.boundaries(k, split, wait_until=run.part_deadline)
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
        k, split = (record["modules"], record["split"]) if record["modules"] else baseline_pair(profile)
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
