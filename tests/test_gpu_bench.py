"""benchmarks/gpu/run.sh, the GPU validation, at its tiny CPU size: every step runs, so it cannot rot unseen.

About a minute on 2 idle cores (it starts some ten fresh processes); bounded by a subprocess timeout.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.sh"


def run_sh(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_quick_cpu_run_writes_sane_results(tmp_path):
    # about a minute on 2 idle cores; the deadline and the timeout leave room for a machine shared with others
    proc = run_sh("--device", "cpu", "--quick", "--out", str(tmp_path), "--budget-s", "1000", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "cpu-quick.json").read_text())
    page = (tmp_path / "cpu-quick.md").read_text()
    assert results["failures"] == []
    m = results["machine"]
    assert m["torch"] == torch.__version__ and m["python"] and m["device"] == "cpu" and "nvml" in m
    assert results["command"].startswith("bash benchmarks/gpu/run.sh --device cpu --quick")

    tests = results["tests"]
    assert tests["status"] in ("passed", "all skipped", "skipped")  # skipped: pytest is not installed
    if tests["status"] != "skipped":  # no GPU here: the CUDA tests ran and skipped themselves
        assert tests["skipped"] > 0 and tests["failed"] == 0 and tests["errors"] == 0

    memory = results["memory"]
    assert memory["skipped"] == []
    labels = {r["label"] for r in memory["records"]}
    assert labels == {"e2e", "checkpoint", "parallel-trgl K=2 equal", "sequential-trgl K=4 balanced"}
    for r in memory["records"]:
        assert "error" not in r, r
        assert r["peak_bytes"] > 0 and r["estimate_bytes"] > 0 and r["time_per_sample_s"] > 0, r
        assert 0.7 < r["peak_bytes"] / r["estimate_bytes"] < 1.5, r  # the estimate is the measured figure's kin
        assert r["nvml_process_peak_bytes"] is None  # no NVML on a CPU machine: null, not a made-up zero
    balanced = next(r for r in memory["records"] if r["label"] == "sequential-trgl K=4 balanced")
    assert len(balanced["boundaries"]) == 3
    e2e = next(r for r in memory["records"] if r["label"] == "e2e")
    assert balanced["peak_bytes"] < e2e["peak_bytes"]

    budget = results["budget"]
    assert budget["status"] == "passed"
    assert budget["sequential"]["held"] and 0 < budget["sequential"]["peak_bytes"] <= budget["budget_bytes"]
    assert budget["e2e"]["refused_in_one_line"] and budget["e2e"]["exit_code"] == 2
    assert "budget" in budget["e2e"]["stderr_lines"][0]

    runs = results["walltime"]["runs"]
    assert [r["label"] for r in runs] == ["cpu default", "cpu --cache disk"]
    assert all(r["wall_time_s"] > 0 and r["last_module_accuracy"] is not None for r in runs)
    assert runs[1]["cache"] == "disk"

    for heading in ("## 1. CUDA tests", "## 2. Memory and time", "### Measured vs the estimate", "### Against e2e",
                    "## 3. Budget held", "## 4. Wall time"):
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

    spec = importlib.util.spec_from_file_location(f"gpu_bench_{name}", ROOT / "benchmarks" / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
