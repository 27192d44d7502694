"""benchmarks/chaos.py's short mode: one run through one fault of each kind, nothing lost, bit-identical;
and the recorded results (benchmarks/results/) are written only when asked for."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# the short mode puts each of these at a fault point of its launch: every one must fire
SCHEDULED = {"corrupt shard", "sigterm in evaluation", "sigkill at checkpoint_write", "second writer",
             "corrupt checkpoint"}


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
    before = snapshot(RESULTS)
    proc = chaos("--short", "--json", str(figures))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(figures.read_text()), before, snapshot(RESULTS)


def test_chaos_short_mode_loses_nothing(short_run):
    result, _, _ = short_run
    assert result["runs"] == result["identical"] == 1, result["differences"]
    assert result["differing"] == result["lost"] == result["unexpected"] == 0, result["unexpected_outcomes"]
    assert SCHEDULED <= set(result["kinds"]), result["kinds"]  # every scheduled fault fired
    unfired = [f for f in result["runs_detail"][0]["log"] if not f["fired"] and f["kind"] not in ("none", "disk full")]
    assert unfired == [], unfired  # only the disk filling up is timed (and needs root for its tmpfs)
    stops = sum(n for kind, n in result["kinds"].items() if kind.startswith(("sigkill", "sigterm")))
    assert result["restarts"] >= stops  # every launch a signal stopped was started again (and ended identical)


def test_chaos_short_mode_leaves_the_recorded_results_alone(short_run):
    _, before, after = short_run
    assert after == before


def test_chaos_writes_results_only_where_told(tmp_path):
    """``--report`` rebuilds chaos.json/.md from chaos-runs.jsonl: into ``--results DIR`` only, and not at
    all without ``--record`` or ``--results`` (it used to rewrite benchmarks/results/ whatever it was told)."""
    before = snapshot(RESULTS)
    refused = chaos("--report")
    assert refused.returncode == 2 and "add --record" in refused.stderr, refused.stderr
    row = {"regime": "e2e", "index": 0, "seed": 0, "finished": True, "identical": True, "difference": "", "faults": 2,
           "kinds": {"sigkill timed": 2}, "launches": 3, "restarts": 2, "unexpected": [], "not_fired": 0, "log": []}
    (tmp_path / "chaos-runs.jsonl").write_text(json.dumps(row) + "\n")
    proc = chaos("--report", "--results", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = json.loads((tmp_path / "chaos.json").read_text())
    assert written["faults"] == 2 and written["kinds"] == {"sigkill timed": 2}
    assert "2 faults injected over 1 runs" in (tmp_path / "chaos.md").read_text()
    assert snapshot(RESULTS) == before
