"""Memory readers: /proc/meminfo, tegrastats and NVML parsing on canned text; fresh-process RSS."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

from edgetrgl.errors import UserError
from edgetrgl.memory import (device_memory_snapshot, host_memory, is_jetson, nvml_devices, parse_meminfo,
                             parse_tegrastats, run_fresh, tegrastats_sample, worker_main)

MEMINFO = """MemTotal:        3964428 kB
MemFree:          812344 kB
MemAvailable:    2219100 kB
Buffers:           61232 kB
HugePages_Total:       0
garbage line without colon
Hugepagesize:       2048 kB
"""

# Jetson Nano (JetPack 4): no date prefix, IRAM field on some boards
NANO = ("RAM 2109/3964MB (lfb 4x4MB) IRAM 0/252kB(lfb 252kB) SWAP 0/1982MB (cached 0MB) CPU [9%@102,6%@102,off,off] "
        "EMC_FREQ 0% GR3D_FREQ 12% PLL@33C CPU@35.5C GPU@35C thermal@35.25C POM_5V_IN 1431/1431")
# Orin (JetPack 5/6): date and time first
ORIN = ("11-13-2023 10:30:45 RAM 3076/30536MB (lfb 6087x4MB) SWAP 0/15268MB (cached 0MB) CPU [1%@729,0%@729] "
        "EMC_FREQ 0%@204 GR3D_FREQ 0%@[305,305] VIC_FREQ 115 APE 174 CV0@-256C CPU@44.843C")


def test_parse_meminfo_converts_kib_and_skips_junk():
    info = parse_meminfo(MEMINFO)
    assert info["MemTotal"] == 3964428 * 1024
    assert info["MemAvailable"] == 2219100 * 1024
    assert info["HugePages_Total"] == 0  # no unit: a count, not kB
    assert "garbage line without colon" not in info and len(info) == 6


def test_host_memory_reads_meminfo_then_falls_back_to_psutil(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO)
    assert host_memory(str(path)) == {"total_bytes": 3964428 * 1024, "available_bytes": 2219100 * 1024,
                                      "source": "/proc/meminfo"}
    fallback = host_memory(str(tmp_path / "missing"))
    assert fallback["source"] == "psutil" and fallback["available_bytes"] > 0


def test_is_jetson_from_release_file_or_device_tree(tmp_path):
    missing = str(tmp_path / "none")
    assert not is_jetson(missing, missing)
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert is_jetson(missing, str(model))
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert not is_jetson(missing, str(model))
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R35 (release), REVISION: 4.1\n")
    assert is_jetson(str(release), str(model))


def test_parse_tegrastats_nano_and_orin_lines():
    nano = parse_tegrastats(NANO)
    assert nano == {"ram_used_bytes": 2109 * 2**20, "ram_total_bytes": 3964 * 2**20, "swap_used_bytes": 0,
                    "swap_total_bytes": 1982 * 2**20, "gpu_load_percent": 12}  # IRAM is not RAM
    orin = parse_tegrastats(ORIN)
    assert orin["ram_used_bytes"] == 3076 * 2**20 and orin["ram_total_bytes"] == 30536 * 2**20
    assert orin["gpu_load_percent"] == 0
    assert parse_tegrastats("RAM 100/200kB")["ram_total_bytes"] == 200 * 1024
    assert parse_tegrastats("") is None and parse_tegrastats("tegrastats: permission denied") is None
    assert parse_tegrastats("IRAM 0/252kB(lfb 252kB)") is None


def test_tegrastats_sample_runs_the_tool_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tegrastats_sample() is None  # not on PATH
    tool = tmp_path / "tegrastats"
    tool.write_text(f"#!/bin/sh\necho 'starting'\necho '{ORIN}'\nsleep 30\n")  # runs until killed, like the real one
    tool.chmod(0o755)
    assert tegrastats_sample(timeout_s=5)["ram_used_bytes"] == 3076 * 2**20


def test_nvml_guards_every_call(monkeypatch):
    class NVMLError(Exception):
        pass

    def fail(*_):
        raise NVMLError("not supported")

    broken = types.SimpleNamespace(nvmlInit=fail, nvmlShutdown=lambda: None)
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert nvml_devices() is None  # no driver

    mem = types.SimpleNamespace(total=16 * 2**30, used=2**30, free=15 * 2**30)
    gpu = types.SimpleNamespace(nvmlInit=lambda: None, nvmlShutdown=fail, nvmlDeviceGetCount=lambda: 2,
                                nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetName=lambda h: b"Orin",
                                nvmlDeviceGetMemoryInfo=lambda h: mem if h == 0 else fail())
    monkeypatch.setitem(sys.modules, "pynvml", gpu)
    devices = nvml_devices()
    assert devices[0] == {"index": 0, "name": "Orin", "total_bytes": 16 * 2**30, "used_bytes": 2**30, "free_bytes": 15 * 2**30}
    assert devices[1]["name"] == "Orin" and devices[1]["total_bytes"] is None  # integrated GPU: no memory figures


def test_device_memory_snapshot_always_has_host_memory():
    snap = device_memory_snapshot()
    assert snap["host"]["available_bytes"] > 0
    assert "nvml" in snap and isinstance(snap["jetson"], bool)


def test_rss_baseline_sees_a_new_allocation():
    """In a fresh process: inside this long one, freed pages are reused and the delta would mislead."""
    import subprocess
    import sys

    code = ("import torch\nfrom edgetrgl.memory.process import RssBaseline\nb = RssBaseline()\n"
            "block = torch.ones(64 * 2**20 // 4)\nprint(b.delta())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[-1]) >= 60 * 2**20


WORKER = """
import sys
from edgetrgl.memory.process import RssBaseline, worker_main

def measure(payload):
    baseline = RssBaseline()
    block = bytearray(payload["mib"] * 2**20)
    return {"echo": payload["mode"], **baseline.to_dict()}

sys.exit(worker_main(measure))
"""

# what a worker looks like to the parent, without paying for importing torch in a fresh process
BARE_WORKER = """
import json, sys
payload = json.load(open(sys.argv[2]))
if payload["mode"] == "user":
    json.dump({"user_error": "bad setting"}, open(sys.argv[4], "w"))
    sys.exit(2)
raise ZeroDivisionError("boom")
"""


def test_run_fresh_returns_the_workers_result(tmp_path):
    (tmp_path / "fake_worker.py").write_text(WORKER)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = run_fresh("fake_worker", {"mode": "ok", "mib": 40}, timeout=120, env=env)
    assert result["echo"] == "ok" and result["peak_rss_bytes"] >= 35 * 2**20


def test_run_fresh_raises_the_workers_user_error_or_crash(tmp_path):
    (tmp_path / "bare_worker.py").write_text(BARE_WORKER)
    env = {"PYTHONPATH": str(tmp_path)}
    with pytest.raises(UserError, match="bad setting"):
        run_fresh("bare_worker", {"mode": "user"}, timeout=60, env=env)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_fresh("bare_worker", {"mode": "crash"}, timeout=60, env=env)


def test_worker_main_writes_user_errors_and_keeps_tracebacks(tmp_path, capsys):
    payload, out = tmp_path / "payload.json", tmp_path / "out.json"
    payload.write_text('{"x": 1}')

    def user(_):
        raise UserError("no such model")

    assert worker_main(user, ["--payload", str(payload), "--out", str(out)]) == 2
    assert json.loads(out.read_text()) == {"user_error": "no such model"}
    assert worker_main(lambda p: {"double": 2 * p["x"]}, ["--payload", str(payload)]) == 0
    assert json.loads(capsys.readouterr().out) == {"double": 2}  # no --out: stdout

    def crash(_):
        raise KeyError("bug")

    assert worker_main(crash, ["--payload", str(payload), "--out", str(tmp_path / "none.json")]) == 1
    assert "KeyError" in capsys.readouterr().err and not (tmp_path / "none.json").exists()


def test_a_torch_without_memtracker_is_one_clear_line(monkeypatch, capsys):
    """torch 2.4 (a board's hand-installed release) has no MemTracker: the run stops with one line
    naming the fix, not a ModuleNotFoundError (measured: torch 2.4.1 in the emulated Pi 4)."""
    import torch

    from edgetrgl.cli.main import main
    from edgetrgl.memory import tensor

    tensor._peak_tracker_class.cache_clear()
    monkeypatch.setitem(sys.modules, "torch.distributed._tools.mem_tracker", None)  # import raises ImportError
    try:
        code = main(["bench", "--estimate", "--model", "resnet20", "--modules", "2", "--compare", "e2e"])
    finally:
        tensor._peak_tracker_class.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"edgetrgl: error: torch {torch.__version__} has no MemTracker "
                   "(torch.distributed._tools.mem_tracker), which edgetrgl's memory estimates need: install torch >= 2.5"]
