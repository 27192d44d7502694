"""benchmarks/chaos.py's short mode: one run through one fault of each kind, nothing lost, bit-identical."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_chaos_short_mode_loses_nothing(tmp_path):
    figures = tmp_path / "chaos.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--short", "--json", str(figures)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(figures.read_text())
    assert result["runs"] == result["identical"] == 1, result["differences"]
    assert result["differing"] == result["lost"] == result["unexpected"] == 0, result["unexpected_outcomes"]
    assert result["faults"] >= 4, result["kinds"]  # most of the six kinds fired (a timed one may come too late)
    assert result["restarts"] >= result["faults"] - 1
