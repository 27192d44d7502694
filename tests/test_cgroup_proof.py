"""The memory-cgroup runner of benchmarks/devices/cgroup_proof.py: peak read, OOM kill seen, cgroup removed.

Needs root and a writable cgroup memory controller (v2 or v1); skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "devices" / "cgroup_proof.py"
MiB = 2**20


def _load():
    spec = importlib.util.spec_from_file_location("cgroup_proof", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cgroup_proof"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


proof = _load()


@pytest.fixture
def writable_cgroups():
    if os.geteuid() != 0:
        pytest.skip("creating a cgroup needs root")
    if proof.cgroup_version() is None:
        pytest.skip("no cgroup memory controller")
    try:
        with proof.Cgroup(64 * MiB):
            pass
    except OSError as err:
        pytest.skip(f"cgroups not writable here: {err}")


def test_peak_is_read_and_the_cgroup_removed(writable_cgroups):
    group = proof.Cgroup(256 * MiB)
    with group:
        result = group.run([sys.executable, "-c", "x = bytearray(60 * 2**20); x[::4096] = b'1' * len(x[::4096])"],
                           timeout_s=60)
        dirs = list(group.dirs.values())
        assert all(d.exists() for d in dirs)
    assert not any(d.exists() for d in dirs)
    assert result.exit_code == 0 and result.oom_kills in (0, None) and not result.oom_killed
    assert 60 * MiB <= result.peak_bytes <= 256 * MiB
    assert result.limit_bytes == 256 * MiB and result.wall_s > 0
    assert result.max_anon_bytes_sampled is None or result.max_anon_bytes_sampled <= result.peak_bytes


def test_over_the_limit_is_oom_killed(writable_cgroups):
    result = proof.run_in_cgroup([sys.executable, "-c", "x = bytearray(200 * 2**20)"], 64 * MiB, timeout_s=60)
    assert result.oom_killed and result.exit_code == -9
    assert result.peak_bytes <= 64 * MiB


def test_disk_throttle_slows_direct_writes(writable_cgroups, tmp_path):
    import shutil

    if shutil.which("dd") is None:
        pytest.skip("no dd")
    try:
        group = proof.Cgroup(64 * MiB, write_bps=10 * 10**6, throttle_path=str(tmp_path))
    except OSError as err:  # tmp_path on tmpfs or overlay: no block device to throttle
        pytest.skip(f"no throttleable disk under {tmp_path}: {err}")
    with group:
        result = group.run(["dd", "if=/dev/zero", f"of={tmp_path / 'x.bin'}", "bs=1M", "count=10", "oflag=direct"],
                           timeout_s=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if result.exit_code != 0:
        pytest.skip("O_DIRECT writes not supported here")
    assert result.wall_s >= 0.8  # 10 MiB at 10 MB/s: about 1 s; unthrottled, a few ms
    assert result.throttle["write_bps"] == 10 * 10**6
