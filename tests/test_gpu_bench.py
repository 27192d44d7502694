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
    proc = run_sh("--device", "cpu", "--quick", "--out", str(tmp_path), "--budget-s", "540", timeout=600)
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
    assert {"e2e", "checkpoint", "parallel-trgl K=2 equal", "sequential-trgl K=2 equal",
            "parallel-trgl K=4 balanced", "sequential-trgl K=4 balanced"} <= labels
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

