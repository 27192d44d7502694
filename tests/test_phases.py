"""Where the time goes: per-phase wall time in metrics.jsonl and summary.json, and the fused test pass."""

import json

import pytest
import torch

from edgetrgl.api import train
from edgetrgl.training.phases import PHASES, PhaseClock, describe
from tests.conftest import tiny_config


def test_phase_clock_accounts_and_reports_the_rest():
    clock = PhaseClock()
    clock.add("steps", 2.0)
    start = clock.snapshot()
    clock.add("steps", 1.0)
    clock.add("cache_fill", 0.5)
    assert clock.since(start)["steps"] == 1.0 and clock.since(start)["cache_fill"] == 0.5
    report = clock.report(wall_time_s=4.0)
    assert report["other"] == 0.5 and set(report) == {*PHASES, "other"}
    assert describe({"steps": 3.0, "data": 1.0}) == "steps 75%, data 25%"


@pytest.mark.parametrize("regime,cache", [("sequential", "host"), ("sequential", "none"), ("e2e", "auto")])
def test_runs_record_their_phases(regime, cache, synthetic_data, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(regime=regime, cache=cache, epochs=1), data=synthetic_data, out=str(out), quiet=True)
    phases = result.extra["phases_s"]
    assert set(phases) == {*PHASES, "other"}
    assert phases["steps"] > 0 and phases["checkpoint"] > 0
    assert sum(phases.values()) == pytest.approx(result.wall_time_s, abs=0.05)
    assert (phases["cache_fill"] > 0) == (regime == "sequential" and cache == "host")
    modules = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    modules = [r for r in modules if r["event"] == "module"]
    assert all(r["phases_s"]["steps"] > 0 for r in modules)
    assert json.loads((out / "summary.json").read_text())["phases_s"] == phases


def test_fused_test_pass_scores_the_head_as_a_separate_evaluation_would(synthetic_data):
    """Caching module k's test outputs and scoring its head on them gives the same accuracy as
    evaluating first and caching after (the order the sequential loop used to run them in)."""
    fused = train(tiny_config(regime="sequential", cache="host", augment=False), data=synthetic_data, out=None,
                  quiet=True)
    recomputed = train(tiny_config(regime="sequential", cache="none", augment=False), data=synthetic_data, out=None,
                       quiet=True)
    assert [m["test_accuracy"] for m in fused.modules] == [m["test_accuracy"] for m in recomputed.modules]
    fused_state, recomputed_state = fused.net.state_dict(), recomputed.net.state_dict()
    assert all(torch.equal(fused_state[name], recomputed_state[name]) for name in fused_state)
