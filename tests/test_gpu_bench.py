"""benchmarks/gpu/run.sh, the GPU validation, at its tiny CPU size: every step runs, so it cannot rot unseen.

About a minute on 2 idle cores (it starts some ten fresh processes); bounded by a subprocess timeout.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.sh"


def run_sh(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_quick_cpu_run_writes_sane_results(tmp_path):
    # about 90 s on 2 idle cores (some twenty fresh processes); the deadline and the timeout leave room for
    # a machine shared with others (one loaded 8x took 6 minutes)
    proc = run_sh("--device", "cpu", "--quick", "--out", str(tmp_path), "--budget-s", "1000", timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "cpu-quick.json").read_text())
    page = (tmp_path / "cpu-quick.md").read_text()
    assert results["failures"] == []
    m = results["machine"]
    assert m["torch"] == torch.__version__ and m["python"] and m["device"] == "cpu" and "nvml" in m
    assert results["command"].startswith("bash benchmarks/gpu/run.sh --device cpu --quick")
    shares = results["shares_s"]
    assert list(shares) == ["fit", "speed", "memory", "budget", "walltime", "accuracy", "tests"]
    assert shares["accuracy"] == shares["tests"] == 1000 and shares["fit"] < shares["speed"] < shares["memory"]

    fit = results["fit"]  # step_time_model.py on the CPU: its code path, and the rates file it writes
    assert fit["status"] == "done" and fit["rows"] >= 8 and set(fit["fitted"]) == {"fp32", "bf16"}
    assert 0 <= fit["ranking_agreement_fitted"] <= 1 and 0 <= fit["plans_ranked_right_fitted"] <= 1
    rates = json.loads((tmp_path / fit["rates_file_written"]).read_text())
    assert rates["gpus"]["cpu"]["fp32"]["seconds_per_op"] == fit["fitted"]["fp32"]["seconds_per_op"]
    assert (tmp_path / fit["results_file"]).exists()

    speed = results["speed"]
    assert speed["status"] == "done" and not speed["stopped"]
    assert set(speed["e2e"]) == {"device", "plain", "stream", "stream-nosync"} and all(v > 0 for v in speed["e2e"].values())
    (row,) = speed["rows"]
    assert (row["modules"], row["split"], len(row["boundaries"])) == (4, "balanced", 3)
    assert all(len(times) == 4 and all(t > 0 for t in times) for times in row["sequential_per_module"].values())
    assert row["sequential"]["stream"] == pytest.approx(sum(row["sequential_per_module"]["stream"]))
    assert set(row["parallel"]) == {"device", "stream"}
    (ratio,) = speed["ratios"]
    assert ratio["sequential_stream"] == pytest.approx(row["sequential"]["stream"] / speed["e2e"]["stream"])
    assert "not measured in this profile" in speed["target_verdict"]  # K=8 is the full profile's
    for feed in ("plain", "stream"):
        assert "Self CPU" in speed["profile"][feed]["table"] and speed["profile"][feed]["epoch_s"] > 0

    memory = results["memory"]
    assert memory["skipped"] == []
    labels = {r["label"] for r in memory["records"]}
    assert labels == {"e2e", "sequential-trgl K=4 balanced", "checkpoint+bf16", "sequential-trgl+ckpt+bf16 K=4 balanced"}
    for r in memory["records"]:
        assert "error" not in r, r
        assert r["peak_bytes"] > 0 and r["estimate_bytes"] > 0 and r["time_per_sample_s"] > 0, r
        assert 0.7 < r["peak_bytes"] / r["estimate_bytes"] < 1.5, r  # the estimate is the measured figure's kin
        assert r["nvml_process_peak_bytes"] is None  # no NVML on a CPU machine: null, not a made-up zero
    balanced = next(r for r in memory["records"] if r["label"] == "sequential-trgl K=4 balanced")
    assert len(balanced["boundaries"]) == 3
    e2e = next(r for r in memory["records"] if r["label"] == "e2e")
    assert balanced["peak_bytes"] < e2e["peak_bytes"]
    pareto = results["pareto"]
    assert pareto["status"] == "done" and len(pareto["points"]) == 4 and pareto["front"]
    assert pareto["front"] == [x["method"] for x in sorted(pareto["points"], key=lambda x: x["peak_bytes"])
                               if x["on_pareto_front"]]
    assert (tmp_path / pareto["png"]).stat().st_size > 1000  # matplotlib is a test dependency

    budget = results["budget"]
    assert budget["status"] == "passed"
    assert budget["sequential"]["held"] and 0 < budget["sequential"]["peak_bytes"] <= budget["budget_bytes"]
    if budget["e2e"]["exit_code"] == 0:  # fitted by micro-batches, as a user accumulating gradients would
        assert budget["e2e"]["micro_batch"] and budget["e2e"]["held"]
        assert 0 < budget["e2e"]["peak_bytes"] <= budget["budget_bytes"]
    else:
        assert budget["e2e"]["refused_in_one_line"] and budget["e2e"]["exit_code"] == 2
        assert "budget" in budget["e2e"]["stderr_lines"][0]
    assert budget["oom"]["one_line"] and budget["oom"]["exit_code"] == 2 and not budget["oom"]["traceback"]

    runs = results["walltime"]["runs"]
    assert [r["label"] for r in runs] == ["cpu default", "cpu --cache disk"]
    assert all(r["wall_time_s"] > 0 and r["last_module_accuracy"] is not None for r in runs)
    assert runs[1]["cache"] == "disk"

    accuracy = results["accuracy"]  # issue 19's script: run if this tree has it
    if (ROOT / "benchmarks" / "accuracy" / "fashionmnist" / "paper_scale.py").exists():
        assert accuracy["status"] == "done", accuracy
    else:
        assert accuracy["status"] == "skipped" and "paper_scale.py" in accuracy["reason"]

    tests = results["tests"]
    assert tests["status"] in ("passed", "all skipped", "skipped")  # skipped: pytest is not installed
    if tests["status"] != "skipped":  # no GPU here: the CUDA tests ran and skipped themselves
        assert tests["skipped"] > 0 and tests["failed"] == 0 and tests["errors"] == 0

    for heading in ("## 1. Speed", "### torch.profiler", "## 2. Fitted rates", "## 3. Memory and time",
                    "### Measured vs the estimate", "### Against e2e", "### Pareto front", "## 4. Budget held",
                    "## 5. Wall time", "## 6. Accuracy", "## 7. CUDA tests"):
        assert heading in page
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_refusals_are_one_line_and_exit_2(tmp_path):
    cases = [(["--device", "cpu"], "--quick")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA GPU"))
    for args, message in cases:
        proc = run_sh(*args, "--out", str(tmp_path), timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())



def _load(name: str):
    """A helper module of benchmarks/gpu/ (not a package), loaded from its file."""
    import importlib.util

    folder = str(ROOT / "benchmarks" / "gpu")
    spec = importlib.util.spec_from_file_location(f"gpu_bench_{name}", f"{folder}/{name}.py")
    module = importlib.util.module_from_spec(spec)
    saved_path = list(sys.path)
    sys.path.insert(0, folder)  # its own imports of its siblings (``from _runs import ...``)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path  # run.py adds its folders too
        del sys.modules[spec.name]
    return module


def test_nvml_sampler_counts_our_child_and_the_device(monkeypatch):
    """NVML with a fake driver: our child's memory is matched by pid, a stranger's is not."""
    from types import SimpleNamespace

    import psutil

    class FakeNvml(SimpleNamespace):
        def nvmlDeviceGetComputeRunningProcesses(self, handle):
            children = [p.pid for p in psutil.Process().children(recursive=True)]
            return [SimpleNamespace(pid=pid, usedGpuMemory=300 * 2**20) for pid in children] + \
                   [SimpleNamespace(pid=1, usedGpuMemory=2**30)]

        def nvmlDeviceGetMemoryInfo(self, handle):
            busy = bool(psutil.Process().children(recursive=True))
            return SimpleNamespace(total=80 * 2**30, used=(1500 if busy else 1000) * 2**20)

    fake = FakeNvml(nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: "gpu0",
                    nvmlDeviceGetName=lambda h: b"Fake GPU 80GB", nvmlSystemGetDriverVersion=lambda: "550.54.15",
                    nvmlSystemGetCudaDriverVersion=lambda: 12040)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = _load("_nvml").Nvml()
    info = nvml.info()
    assert (info["gpu"], info["driver_version"], info["cuda_driver_version"]) == ("Fake GPU 80GB", "550.54.15", "12.4")
    with nvml.watch(interval_s=0.01) as reading:
        subprocess.run([sys.executable, "-c", "import time; time.sleep(0.5)"], check=True)
    assert reading["nvml_process_peak_bytes"] == 300 * 2**20
    assert reading["nvml_device_delta_peak_bytes"] == 500 * 2**20 and reading["nvml_samples"] > 3


def test_report_compares_with_the_paper_on_the_paper_setting():
    e2e = {"method": "e2e", "modules": None, "split": None, "label": "e2e", "estimate_bytes": 4000, "peak_bytes": 4100,
           "cuda_max_allocated_bytes": 4200, "cuda_max_reserved_bytes": 5000, "nvml_process_peak_bytes": None,
           "nvml_device_delta_peak_bytes": 6000, "time_per_sample_s": 0.001}
    ours = {**e2e, "method": "parallel-trgl", "modules": 8, "split": "equal", "label": "parallel-trgl K=8 equal",
            "estimate_bytes": 1000, "cuda_max_reserved_bytes": 1500, "nvml_device_delta_peak_bytes": 3000}
    results = {"profile": "full", "command": "bash benchmarks/gpu/run.sh", "date": "2026-11-27", "elapsed_s": 300,
               "failures": [], "paper": {"4": 0.76, "8": 0.52, "16": 0.40},
               "machine": {"device": "cuda", "gpu": "Fake GPU", "torch": "2.11", "python": "3.12", "platform": "Linux",
                           "cpu": "x86", "nproc": 16},
               "memory": {"setting": {"model": "resnet110", "input": [3, 96, 96], "batch_size": 64, "data": "synthetic",
                                      "device": "cuda", "steps": 3, "warmup": 1},
                          "records": [e2e, ours], "skipped": ["sequential-trgl K=16 balanced"]}}
    page = _load("_report").markdown(results)
    row = next(line for line in page.splitlines() if line.startswith("| 8 | 0.52x"))
    assert row.split(" | ")[2:5] == ["0.50x", "0.30x", "0.25x"]  # NVML device Δ, reserved, estimate vs e2e
    assert "| 4 | 0.76x | n/a" in page and "Skipped (deadline): sequential-trgl K=16 balanced" in page


def test_step_deadlines_are_cumulative_shares_scaled_to_the_budget():
    deadlines = _load("_schedule").step_deadlines(100.0, ["fit", "speed", "accuracy", "tests"],
                                            {"fit": 10, "speed": 30, "memory": 50, "accuracy": 60}, 200.0)
    assert deadlines == {"fit": 120.0, "speed": 180.0, "accuracy": 300.0, "tests": 300.0}


def test_speed_target_is_judged_at_k8_balanced_with_the_cuda_feed():
    speed = _load("_speed")
    result = {"e2e": {"stream": 1.0e-3, "plain": 1.0e-3},
              "rows": [{"modules": 8, "split": "balanced", "sequential": {"stream": 1.05e-3, "plain": 1.3e-3},
                        "parallel": {"stream": 1.04e-3}}]}
    section = {"setting": {"model": "resnet110", "input": [3, 96, 96], "batch_size": 64}, "ratios": speed.ratios(result)}
    assert section["ratios"][0]["sequential_plain"] == pytest.approx(1.3)
    assert speed.target_verdict(section) == "target sequential <= 1.10x e2e at K=8 balanced: met, 1.05x with the CUDA feed"
    result["rows"][0]["sequential"]["stream"] = 1.2e-3
    section["ratios"] = speed.ratios(result)
    assert "NOT met, 1.20x" in speed.target_verdict(section)


def test_accuracy_step_passes_the_flags_the_script_takes(tmp_path):
    """A stand-in for issue 19's script: the step reads its --help, passes its budget flag, and lists its files."""
    import time
    from types import SimpleNamespace

    script = tmp_path / "benchmarks" / "accuracy" / "fashionmnist" / "paper_scale.py"
    script.parent.mkdir(parents=True)
    script.write_text("import argparse, pathlib\n"
                      "p = argparse.ArgumentParser()\n"
                      "p.add_argument('--time-budget-s', type=float, required=True)\n"
                      "p.add_argument('--out', required=True)\n"
                      "a = p.parse_args()\n"
                      "pathlib.Path(a.out).mkdir(parents=True)\n"
                      "(pathlib.Path(a.out) / 'runs.jsonl').write_text('{}')\n"
                      "print('budget', a.time_budget_s)\n")
    logged = []
    run = SimpleNamespace(root=tmp_path, python=sys.executable, device="cpu", results={}, failures=[],
                          profile=SimpleNamespace(name="quick", accuracy_min_s=5), tests_running=False,
                          part_deadline=time.monotonic() + 100, json_path=tmp_path / "results" / "cpu-quick.json",
                          log=logged.append)
    _load("_accuracy").run_accuracy(run)
    section = run.results["accuracy"]
    assert section["status"] == "done" and run.failures == [], section
    assert section["args"][0] == "--time-budget-s" and 80 <= float(section["args"][1]) <= 85
    assert "--device" not in section["args"] and section["outputs"] == ["runs.jsonl"]
    assert section["stdout_tail"][-1].startswith("budget 8")


def test_balanced_boundaries_come_from_their_own_process(tmp_path):
    import time
    from types import SimpleNamespace

    from edgetrgl.bench.setting import BenchSetting, resolve_boundaries

    profile = _load("run").QUICK
    run = SimpleNamespace(profile=profile, workdir=tmp_path, python=sys.executable, log=lambda message: None)
    estimates = _load("_memory").Estimates(run)
    estimates.start()
    try:
        got = estimates.boundaries(4, "balanced", wait_until=time.monotonic() + 600)
        assert estimates.splits[(4, "balanced")][0].poll() == 0  # from the process, not computed in the test
    finally:
        estimates.stop()
    want = resolve_boundaries(BenchSetting(model=profile.model, model_options=dict(profile.model_options),
                                           image_size=profile.image_size, batch_size=profile.batch_size, modules=4,
                                           split="balanced")).boundaries
    assert got == want and len(got) == 3
    assert estimates.boundaries(2, "equal") is None
