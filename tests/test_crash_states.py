"""A power cut at the worst instants of a real run: ``benchmarks/crash_states.py --quick`` resumes
three crash states (metrics.jsonl's unsynced records lost mid-run, everything unsynced lost at the
end, a checkpoint write torn) on ext4 on a loop device; each must end identical or refuse losing
nothing. Needs root, strace and a free loop device."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._crash_trace import Op, apply, committed, crash_states  # noqa: E402
from benchmarks.crash_states import available  # noqa: E402


def _ops(*specs) -> list[Op]:
    return [Op(i, *spec[:2], **(spec[2] if len(spec) > 2 else {})) for i, spec in enumerate(specs)]


def test_states_lose_what_no_fsync_covered_and_keep_what_one_did():
    ops = _ops(("mkdir", "", {"is_dir": True}), ("fsync", "..", {"is_dir": True}),
               ("create", "a.tmp", {"ino": 1}), ("write", "a.tmp", {"ino": 1, "data": b"new!"}),
               ("rename", "a.tmp", {"ino": 1, "dst": "a"}),  # renamed with neither fsync
               ("create", "m", {"ino": 2}), ("write", "m", {"ino": 2, "data": b"rec"}),
               ("fsync", "m", {"ino": 2}), ("fsync", "", {"is_dir": True}))
    states = {tuple(sorted(s.files.items())) for s in crash_states(ops)}  # equal states merged
    assert (("a", b""),) in states  # the rename persisted without its data
    assert (("a", b"ne"),) not in states  # no tear of a write that was not the last
    assert (("a.tmp", b"ne"),) in states  # the last write torn
    assert (("a", b""), ("m", b"rec")) in states  # at the end, a's bytes were never fsync'd
    assert (("a", b"new!"), ("m", b"rec")) in states  # or they were: a prefix
    assert committed(ops, 9) == {"m": b"rec"}
    assert committed(ops, 8) == {}  # m's entry needs the folder's fsync
    _, files = apply(ops, lambda op: op.index != 0)  # the folder itself lost: nothing in it survives
    assert files == {}


@pytest.mark.skipif(bool(available()), reason=available() or "")
def test_quick_crash_states_resume_identical_or_refuse_losing_nothing():
    done = subprocess.run([sys.executable, "benchmarks/crash_states.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    tried = re.search(r"(\d+) crash states tried", done.stdout)
    assert tried and int(tried.group(1)) >= 2 and ", 0 failures" in done.stdout, done.stdout[-3000:]
