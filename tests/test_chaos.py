"""benchmarks/chaos.py's short mode: one run through one fault of each kind, nothing lost, bit-identical, on
ext4 on a loop device where root may make one; what the harness borrows (loop devices, mounts, memory cgroups)
is given back however it ends; the recorded results (benchmarks/results/) are written only when asked for."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmarks._chaos_system import leftovers
from benchmarks.chaos import SINGLE, Deck

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# the short mode puts each of these at a fault point of its launch, or once its CLI is up: every one must fire
SCHEDULED = {"corrupt shard", "sigterm in evaluation", "sigkill at checkpoint_write", "second writer",
             "corrupt checkpoint", "sigint timed", "sighup timed", "paused"}
ROOT_TOOLS = os.geteuid() == 0 and all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "mount"))


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def chaos(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "chaos.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """``chaos.py --short`` once: its figures, and the recorded results before and after."""
    figures = tmp_path_factory.mktemp("chaos") / "chaos.json"
    before, borrowed = snapshot(RESULTS), leftovers()
    proc = chaos("--short", "--json", str(figures))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert leftovers() == borrowed  # its loop device, mount and cgroup are gone
    return json.loads(figures.read_text()), before, snapshot(RESULTS)


def test_chaos_short_mode_loses_nothing(short_run):
    result, _, _ = short_run
    assert result["runs"] == result["identical"] == 1, result["differences"]
    assert result["differing"] == result["lost"] == result["unexpected"] == 0, result["unexpected_outcomes"]
    scheduled = SCHEDULED | ({"disk full"} if result["filesystem"].startswith("ext4") else set()) \
        | ({"oom kill"} if result["oom"].startswith("a memory cgroup") else set())
    assert scheduled <= set(result["kinds"]), result["kinds"]  # every scheduled fault fired
    unfired = [f for f in result["runs_detail"][0]["log"] if not f["fired"] and f["kind"] != "none"]
    assert unfired == [], unfired
    stops = sum(n for kind, n in result["kinds"].items() if kind.startswith(("sig", "oom")))
    assert result["restarts"] >= stops  # every launch a signal stopped was started again (and ended identical)
    paused = [f for f in result["runs_detail"][0]["log"] if f["kind"] == "paused"]
    assert paused[-1]["rc"] == 0  # SIGSTOP, SIGCONT: the launch went on and finished the run itself
    assert result["runs_detail"][0]["commit"] == result["commit"] != "unknown"


@pytest.mark.skipif(not ROOT_TOOLS, reason="ext4 on a loop device needs root, losetup and mkfs.ext4")
def test_chaos_short_mode_runs_on_ext4_and_the_oom_killer(short_run):
    result, _, _ = short_run
    assert result["filesystem"].startswith("ext4 on a loop device"), result["filesystem"]
    assert set(result["filesystems"]) == {result["filesystem"]}
    if result["oom"].startswith("a memory cgroup"):
        oom = [f for f in result["runs_detail"][0]["log"] if f["kind"] == "oom kill"]
        assert oom and oom[0]["rc"] == -signal.SIGKILL and "oom_kill +1" in oom[0]["detail"], oom


def test_chaos_short_mode_leaves_the_recorded_results_alone(short_run):
    _, before, after = short_run
    assert after == before


def test_chaos_writes_results_only_where_told(tmp_path):
    """``--report`` rebuilds chaos.json/.md from chaos-runs.jsonl: into ``--results DIR`` only, and not at
    all without ``--record`` or ``--results`` (it used to rewrite benchmarks/results/ whatever it was told)."""
    before = snapshot(RESULTS)
    refused = chaos("--report")
    assert refused.returncode == 2 and "add --record" in refused.stderr, refused.stderr
    row = {"regime": "e2e", "index": 0, "seed": 0, "commit": "abc1234", "filesystem": "ext4 on a loop device",
           "finished": True, "identical": True, "difference": "", "faults": 2, "kinds": {"sigkill timed": 2},
           "launches": 3, "restarts": 2, "unexpected": [], "not_fired": 0, "log": []}
    other = {**row, "seed": 1, "commit": "def5678", "kinds": {"sigint timed": 1, "paused": 1}}
    (tmp_path / "chaos-runs.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(other) + "\n")
    proc = chaos("--report", "--results", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = json.loads((tmp_path / "chaos.json").read_text())
    assert written["faults"] == 4 and written["kinds"] == {"sigkill timed": 2, "sigint timed": 1, "paused": 1}
    assert written["seeds"]["0"]["faults"] == written["seeds"]["1"]["faults"] == 2
    assert written["commits"] == {"abc1234": 1, "def5678": 1}
    md = (tmp_path / "chaos.md").read_text()
    assert "4 faults injected over 2 runs" in md and "abc1234 (1 runs)" in md and "ext4 on a loop device" in md
    assert "| 1 | 1 | 2 |" in md  # the seed table: seed 1, one run, two faults
    assert snapshot(RESULTS) == before


@pytest.mark.skipif(not ROOT_TOOLS, reason="the harness borrows loop devices and cgroups only as root")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stopped_harness_gives_back_its_disk_and_cgroup(signum):
    """Stopped while it holds its ext4 and cgroup (SIGTERM: while a run trains on that disk), the harness
    ends with 128 + the signal's number, its launches killed, nothing mounted, attached or created left."""
    borrowed = leftovers()
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--short", "--json", os.devnull],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    mine: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        mine = leftovers() - borrowed
        disks = [Path(m.split(" on ")[-1]) for m in mine if " on " in m]
        if any("cgroup" in m for m in mine) and disks and (signum != signal.SIGTERM or any(
                p.name.startswith("sequential-disk") for d in disks for p in d.iterdir())):
            break
        time.sleep(0.1)
    assert any("cgroup" in m for m in mine) and any(m.startswith("/dev/loop") for m in mine), mine
    work = next(Path(m.split(" on ")[-1]).parent for m in mine if " on " in m)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    assert leftovers() == borrowed
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if str(work) in " ".join(p.info["cmdline"] or [])]


def test_the_deck_deals_every_kind_once_a_round():
    deck = Deck(random.Random(0), SINGLE)
    no_shard = [k for k in SINGLE if k != "corrupt shard"]
    hand = deck.deal(no_shard, 5) + deck.deal(SINGLE, 7)
    assert sorted(hand) == sorted(SINGLE)  # one round: each kind once, the shard left for a run that has one
    deck.put_back(["pause"])
    assert deck.deal(SINGLE, 1) == ["pause"]  # a card a finished run did not play is dealt next
