"""Steps 1, 3 and 4: the CUDA tests, the budget held, and ``edgetrgl train``'s wall time on the device vs the CPU.

Each runs a child process (pytest, or ``python -m edgetrgl train``) under the parent's NVML sampler
and a timeout taken from the overall deadline.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from edgetrgl.config import parse_size


def _child(run, cmd: list[str], what: str, cap_s: float,
           cwd: Path | None = None) -> tuple[subprocess.CompletedProcess | None, dict[str, Any]]:
    """Run ``cmd`` (in ``cwd``, default the repository) under the NVML sampler; ``(None, reading)`` if it ran
    past its time."""
    timeout = max(60.0, min(cap_s, run.deadline - time.monotonic() + 30.0))
    with run.nvml.watch() as reading:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd or run.root)
        except subprocess.TimeoutExpired:
            run.failures.append(f"{what}: timed out after {timeout:.0f} s")
            return None, reading
    return proc, reading


def child_json(run, cmd: list[str], section: dict[str, Any], what: str, result_path: Path) -> dict[str, Any] | None:
    """Run a script that writes ``result_path`` (JSON); its contents, or None with ``section`` marked failed
    (its stderr tail) and the failure recorded. Its wall time goes into ``section``."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=run.root,
                              timeout=max(60.0, run.deadline - time.monotonic() + 30.0))
    except subprocess.TimeoutExpired:
        proc = None
    section["wall_s"] = round(time.perf_counter() - started, 1)
    if proc is None or proc.returncode != 0 or not result_path.exists():
        tail = "timed out" if proc is None else "\n".join(proc.stderr.strip().splitlines()[-8:])
        section.update(status="failed", error=tail)
        run.failures.append(f"{what} failed ({tail.splitlines()[-1] if tail else 'no output'})")
        return None
    return json.loads(result_path.read_text())


def run_tests(run) -> None:
    """pytest on every test marked ``cuda`` (they skip without a GPU), waited for at once."""
    start_tests(run)()


def start_tests(run):
    """Start pytest on every test marked ``cuda`` in the background; returns the function that waits for it
    and records the counts (the tests use tiny models: they run beside the accuracy step)."""
    section: dict[str, Any] = {"command": None}
    run.results["tests"] = section
    if importlib.util.find_spec("pytest") is None:
        section.update(status="skipped", reason=f"pytest is not installed for {run.python}")
        run.log("tests: skipped (pytest is not installed)")
        return lambda: None
    junit = run.workdir / "pytest.xml"
    # only the files that use the marker: collecting the whole suite imports every test module
    files = sorted(str(f.relative_to(run.root)) for f in (run.root / "tests").glob("test_*.py")
                   if "mark.cuda" in f.read_text())
    if not files:
        section.update(status="skipped", reason="no test file uses the cuda marker")
        return lambda: None
    cmd = [run.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", f"--junitxml={junit}", *files]
    section["command"] = " ".join(cmd[1:]).replace(str(junit), "JUNIT.xml")
    started = time.perf_counter()
    log = open(run.workdir / "pytest.log", "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=run.root)
    run.tests_running = True

    def finish() -> None:
        timeout = max(60.0, min(300.0, run.deadline - time.monotonic() + 30.0))
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        run.tests_running = False
        log.seek(0)
        output = log.read()
        log.close()
        section["wall_s"] = round(time.perf_counter() - started, 1)
        if proc.returncode < 0:
            section["status"] = "timed out"
            run.failures.append(f"tests: timed out after {timeout:.0f} s")
            return
        _record_tests(run, section, junit, proc.returncode, output)

    return finish


def _record_tests(run, section: dict[str, Any], junit: Path, returncode: int, output: str) -> None:
    counts = _junit_counts(junit)
    section.update(counts, exit_code=returncode, output_tail=output.strip().splitlines()[-15:])
    # pytest exits 5 when every test was deselected or none collected: not a failure of a test
    if returncode not in (0, 5) or counts.get("failed") or counts.get("errors") or not counts:
        section["status"] = "failed"
    else:  # without a GPU every test skips itself: say so rather than "passed"
        section["status"] = "passed" if counts["passed"] else "all skipped"
    if section["status"] == "failed":
        run.failures.append(f"tests: {counts} (exit {returncode})")
    run.log(f"tests: {counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
            f"{counts.get('errors', 0)} errors, {counts.get('skipped', 0)} skipped [{section['wall_s']:.1f} s]")


def _junit_counts(path: Path) -> dict[str, int]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    n = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    return {"tests": n["tests"], "passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
            "failed": n["failures"], "errors": n["errors"], "skipped": n["skipped"]}


def _train_cmd(run, *args: str) -> list[str]:
    return [run.python, "-m", "edgetrgl", "train", "--quiet", "--overwrite", *args]


def _summary(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def run_budget(run) -> None:
    """A sequential run under ``--budget`` completes inside it; e2e under the same budget either accumulates
    gradients over micro-batches and holds it too, or is refused in one line."""
    p = run.profile
    section: dict[str, Any] = {}
    run.results["budget"] = section
    if run.device == "cuda" and p.budget_cpu_only:
        section.update(status="skipped", reason="the --quick budget is smaller than the CUDA allocator's 2 MiB segments")
        run.log("budget: skipped (quick profile on CUDA)")
        return
    budget = parse_size(p.budget)
    config = run.workdir / "budget.toml"
    config.write_text(p.budget_toml())
    common = ["--config", str(config), "--budget", p.budget, "--device", run.device, "--epochs", "1",
              "--batch-size", str(p.batch_size)]
    section.update(budget=p.budget, budget_bytes=budget, setting=p.budget_toml())

    out = run.workdir / "budget-sequential"
    seq_args = ["--regime", "sequential", "--modules", str(p.budget_modules), "--split", "balanced"]
    started = time.perf_counter()
    proc, reading = _child(run, _train_cmd(run, *common, *seq_args, "--out", str(out)), "budget sequential", cap_s=240)
    summary = _summary(out) if proc is not None and proc.returncode == 0 else None
    seq: dict[str, Any] = {"args": seq_args, "exit_code": None if proc is None else proc.returncode,
                           "wall_s": round(time.perf_counter() - started, 1), **reading}
    if summary is not None:
        key = "cuda_max_reserved_bytes" if run.device == "cuda" else "peak_bytes"
        peaks = [m.get(key) for m in summary["modules"]]
        seq.update(reading_name=key, per_module_bytes=peaks, peak_bytes=max((x or 0) for x in peaks),
                   modules=len(summary["modules"]), blocks=[m["blocks"] for m in summary["modules"]],
                   estimated_bytes=[m.get("estimated_peak_bytes") for m in summary["modules"]],
                   tensor_peak_bytes=summary.get("peak_bytes"), wall_time_s=summary.get("wall_time_s"),
                   last_module_accuracy=summary["last_module"]["test_accuracy"])
        seq["held"] = None not in peaks and seq["peak_bytes"] <= budget
    else:
        seq["held"] = False
        seq["stderr_tail"] = "" if proc is None else proc.stderr.strip().splitlines()[-5:]
    section["sequential"] = seq
    if not seq["held"]:
        run.failures.append(f"budget: the sequential run did not hold {p.budget}")
    run.log(f"budget: sequential K={p.budget_modules} balanced under {p.budget}: "
            f"{'held' if seq['held'] else 'NOT held'}, peak {_READING.get(seq.get('reading_name'), '?')} "
            f"{_mib(seq.get('peak_bytes'))} [{seq['wall_s']:.1f} s]")

    out = run.workdir / "budget-e2e"
    started = time.perf_counter()
    # plain backprop (checkpointing off: under --checkpoint-blocks auto e2e may fit by recomputing)
    proc, _ = _child(run, _train_cmd(run, *common, "--regime", "e2e", "--checkpoint-blocks", "off", "--out", str(out)),
                     "budget e2e", cap_s=120)
    lines = [] if proc is None else [line for line in proc.stderr.splitlines() if line.strip()]
    e2e = {"exit_code": None if proc is None else proc.returncode, "stderr_lines": lines,
           "wall_s": round(time.perf_counter() - started, 1),
           "traceback": proc is not None and "Traceback" in proc.stderr}
    e2e["refused_in_one_line"] = e2e["exit_code"] == 2 and len(lines) == 1 and not e2e["traceback"]
    done = _summary(out) if e2e["exit_code"] == 0 else None
    if done is not None:  # the planner fitted e2e by micro-batches: it must hold the budget too
        key = "cuda_max_reserved_bytes" if run.device == "cuda" else "peak_bytes"
        peaks = [m.get(key) for m in done["modules"]]
        e2e.update(micro_batch=done["plan"].get("micro_batch"), peak_bytes=max((x or 0) for x in peaks),
                   held=None not in peaks and max(peaks) <= budget)
    e2e["ok"] = e2e["refused_in_one_line"] or bool(e2e.get("held"))
    section["e2e"] = e2e
    if not e2e["ok"]:
        run.failures.append(f"budget: e2e under {p.budget} neither held it nor was refused in one line "
                            f"(exit {e2e['exit_code']})")
    run.log(f"budget: e2e under {p.budget}: exit {e2e['exit_code']}, "
            f"{lines[0] if len(lines) == 1 else f'{len(lines)} stderr lines'} [{e2e['wall_s']:.1f} s]")
    section["oom"] = run_oom(run, common, seq_args)
    section["status"] = "passed" if seq["held"] and e2e["ok"] and section["oom"]["one_line"] else "failed"


def run_oom(run, common: list[str], seq_args: list[str]) -> dict[str, Any]:
    """An allocator out-of-memory error in the middle of training ends in one line, exit 2: on a GPU the
    fault point allocates a petabyte at the second step (a real CUDA OOM), on the CPU it raises one."""
    out = run.workdir / "budget-oom"
    started = time.perf_counter()
    env = {**os.environ, "EDGETRGL_OOM_AT": "step:2"}
    cmd = _train_cmd(run, *[a for a in common if a != "--budget" and a != run.profile.budget], *seq_args, "--out", str(out))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=run.root, env=env)
    except subprocess.TimeoutExpired:
        proc = None
    lines = [] if proc is None else [line for line in proc.stderr.splitlines() if line.strip()]
    record = {"env": "EDGETRGL_OOM_AT=step:2", "exit_code": None if proc is None else proc.returncode,
              "stderr_lines": lines, "wall_s": round(time.perf_counter() - started, 1),
              "traceback": proc is not None and "Traceback" in proc.stderr}
    record["one_line"] = (record["exit_code"] == 2 and len(lines) == 1 and not record["traceback"]
                          and "out of memory" in lines[0])
    if not record["one_line"]:
        run.failures.append(f"budget: an out-of-memory error was not turned into one line (exit {record['exit_code']})")
    run.log(f"budget: out of memory at step 2: exit {record['exit_code']}, "
            f"{lines[0] if len(lines) == 1 else f'{len(lines)} stderr lines'} [{record['wall_s']:.1f} s]")
    return record


def run_walltime(run) -> None:
    """``edgetrgl train`` (bundled data) and the same with ``--cache disk``, on the device and on the CPU."""
    p = run.profile
    section: dict[str, Any] = {"runs": [], "skipped": []}
    run.results["walltime"] = section
    devices = [run.device] + (["cpu"] if run.device != "cpu" and p.walltime_vs_cpu else [])
    if run.device == "cpu":
        section["note"] = "the device is the CPU: no second, CPU-only run to compare with"
    elif not p.walltime_vs_cpu:
        section["note"] = "no CPU runs this time (this profile's time goes to the GPU); earlier results have them"
    if p.train_toml:
        section["train_toml"] = p.train_toml
    for cache_args in ([], ["--cache", "disk"]):
        for device in devices:
            label = f"{device} {' '.join(cache_args) or 'default'}"
            if time.monotonic() > run.part_deadline:
                section["skipped"].append(label)
                run.log(f"walltime: {label} skipped (deadline)")
                continue
            out = run.workdir / f"train-{device}-{'disk' if cache_args else 'default'}"
            args = ["--device", device, *cache_args, *p.train_args]
            if p.train_toml:
                (run.workdir / "train.toml").write_text(p.train_toml)
                args += ["--config", "train.toml"]  # relative to the working folder, so the record reads well
            started = time.perf_counter()
            proc, reading = _child(run, _train_cmd(run, *args, "--out", str(out)), f"walltime {label}", cap_s=240,
                                   cwd=run.workdir)
            summary = _summary(out) if proc is not None and proc.returncode == 0 else None
            record: dict[str, Any] = {"label": label, "device": device, "args": args,
                                      "exit_code": None if proc is None else proc.returncode,
                                      "process_wall_s": round(time.perf_counter() - started, 1), **reading}
            if summary is not None:
                modules = summary["modules"]
                record.update(wall_time_s=summary["wall_time_s"], data_mode=summary.get("data_mode"),
                              cache=summary.get("cache"), last_module_accuracy=summary["last_module"]["test_accuracy"],
                              best_module_accuracy=summary["best_module"]["test_accuracy"],
                              cuda_max_reserved_bytes=max((m.get("cuda_max_reserved_bytes") or 0) for m in modules) or None)
            else:
                record["stderr_tail"] = "" if proc is None else proc.stderr.strip().splitlines()[-5:]
                run.failures.append(f"walltime {label}: exit {record['exit_code']}")
            section["runs"].append(record)
            run.save()
            run.log(f"walltime: {label:<22} wall_time_s {record.get('wall_time_s', 'n/a')} "
                    f"(process {record['process_wall_s']:.1f} s)")


_READING = {"cuda_max_reserved_bytes": "CUDA max reserved", "peak_bytes": "tensor peak"}


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.1f} MiB"
