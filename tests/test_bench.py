"""``edgetrgl bench``: estimates, measured runs in fresh processes, estimate vs measurement, bad input."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from edgetrgl.bench import BenchSetting, parse_methods
from edgetrgl.bench.estimate import estimate_method
from edgetrgl.bench.methods import measure_method
from edgetrgl.bench.setting import build_net
from edgetrgl.cli.main import main

TINY = ["--model", "resnet20", "--model-option", "width=4", "--image-size", "16", "--batch-size", "16",
        "--modules", "3", "--steps", "1", "--warmup", "1", "--device", "cpu"]
REQUIRED = {"method", "peak_bytes", "peak_rss_bytes", "samples_per_s", "savings_vs_e2e"}


def by_method(report):
    return {r["method"]: r for r in report["results"]}


def test_estimate_writes_json_with_the_required_keys(tmp_path, capsys):
    out = tmp_path / "est.json"
    assert main(["bench", *TINY, "--estimate", "--compare", "e2e,checkpoint,offload", "--json", str(out)]) == 0
    assert "sequential-trgl" in capsys.readouterr().out  # the table goes to stdout
    report = json.loads(out.read_text())
    assert set(report) >= {"setting", "versions", "results"}
    assert set(report["versions"]) >= {"torch", "python", "platform", "cpu"}
    assert report["setting"]["block_ranges"] == [[0, 3], [3, 6], [6, 9]]
    results = by_method(report)
    assert list(results) == ["e2e", "checkpoint", "offload", "parallel-vangl", "parallel-trgl",
                             "sequential-vangl", "sequential-trgl"]
    assert all(REQUIRED <= set(r) for r in results.values())
    assert results["e2e"]["savings_vs_e2e"] == 0.0
    for name in ("sequential-vangl", "sequential-trgl", "checkpoint", "offload"):
        assert 0 < results[name]["peak_bytes"] < results["e2e"]["peak_bytes"], name
    assert results["sequential-vangl"]["peak_bytes"] <= results["parallel-vangl"]["peak_bytes"]
    assert len(results["sequential-trgl"]["per_module"]) == 3


def test_estimate_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    assert main(["bench", *TINY, "--estimate", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_measured_bench_runs_each_method_in_a_fresh_process(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "edgetrgl.cli.main", "bench", *TINY, "--threads", "1",
                           "--compare", "e2e,sequential-trgl+ckpt+bf16", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "samples/s" in proc.stdout and "sequential-trgl" in proc.stdout
    report = json.loads(out.read_text())
    results = by_method(report)
    assert report["mode"] == "measured" and report["versions"]["torch_threads"] >= 1
    for r in results.values():
        assert REQUIRED <= set(r)
        assert r["peak_bytes"] > 0 and r["samples_per_s"] > 0 and r["peak_rss_bytes"] >= 0
        assert r["rss_baseline_exact"] in (True, False)
    assert results["e2e"]["savings_vs_e2e"] == 0.0 and results["e2e"]["time_vs_e2e"] == 1.0
    assert results["sequential-vangl"]["peak_bytes"] < results["e2e"]["peak_bytes"]
    assert [m["module"] for m in results["sequential-trgl"]["per_module"]] == [1, 2, 3]
    # a variant with step options runs through the same worker, and its options take effect
    assert results["sequential-trgl+ckpt+bf16"]["peak_bytes"] < results["sequential-trgl"]["peak_bytes"]
    assert report["pareto"]["y"] == "time_per_sample_s" and report["pareto"]["front"]


@pytest.mark.parametrize("method", ["e2e", "sequential-trgl", "sequential-vangl", "parallel-trgl", "checkpoint",
                                    "sequential-trgl+ckpt", "sequential-trgl+bf16", "e2e+bf16"])
def test_estimate_matches_the_measured_tensor_peak(method):
    """The same plan, MemTracker both ways: fake tensors vs a real step on the CPU, within 10%."""
    setting = BenchSetting(model="resnet20", model_options={"width": 8}, image_size=16, batch_size=32, modules=3,
                           steps=1, warmup=1)
    estimated = estimate_method(setting, method)["peak_bytes"]
    torch.set_num_threads(1)  # one thread: a busy shared machine slows it down least (conftest resets it)
    torch.manual_seed(0)
    measured = measure_method(setting, method, build_net(setting, method))["peak_bytes"]
    assert abs(estimated - measured) <= 0.10 * measured, (method, estimated, measured)


def test_parse_methods_puts_e2e_first_then_ours():
    assert parse_methods("offload, e2e")[:3] == ["e2e", "offload", "parallel-vangl"]
    assert parse_methods("checkpoint")[0] == "e2e"  # e2e always runs: every ratio is taken against it


@pytest.mark.parametrize("args, message", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--modules", "99"], "--modules 99 is larger than the model's 9 blocks"),
    (["--compare", "e2e,zero"], "--compare takes e2e, checkpoint, offload"),
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--steps", "0"], "--steps must be a positive integer, got 0"),
    (["--model-option", "width"], "--model-option takes KEY=VALUE"),
    (["--model-option", "depth=3"], "does not accept option(s) depth"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["bench", "--estimate", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgetrgl: error: ") and message in err and err.count("\n") == 1


def test_bad_choice_through_the_console_script_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "edgetrgl.cli.main", "bench", "--split", "halves"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    assert main(["bench", *TINY, "--estimate", "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install edgetrgl[plot]" in capsys.readouterr().err


def test_balanced_split_uses_the_planner(tmp_path, capsys):
    if importlib.util.find_spec("edgetrgl.memory.planner") is None:
        assert main(["bench", *TINY, "--estimate", "--split", "balanced"]) == 2
        assert "--split balanced is not available" in capsys.readouterr().err
        return
    equal, balanced = tmp_path / "equal.json", tmp_path / "balanced.json"
    assert main(["bench", *TINY, "--estimate", "--json", str(equal)]) == 0
    assert main(["bench", *TINY, "--estimate", "--split", "balanced", "--json", str(balanced)]) == 0
    equal, balanced = json.loads(equal.read_text()), json.loads(balanced.read_text())
    assert len(balanced["setting"]["boundaries"]) == 2 and "memory-balanced split" in " ".join(balanced["notes"])
    worst = lambda report: by_method(report)["sequential-trgl"]["peak_bytes"]  # noqa: E731
    assert worst(balanced) <= worst(equal)
