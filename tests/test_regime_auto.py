"""``--regime auto``: the planner weighs e2e (full batch, checkpointing, micro-batches) beside
module-wise training under the budget, and picks the most exact way that fits within
``TIME_FACTOR`` of the fastest. One test per branch, on a tiny model."""

import json
import subprocess
import sys

import pytest

from edgetrgl.api import plan, train
from edgetrgl.errors import UserError
from edgetrgl.memory.planner import NoPlanFits
from edgetrgl.planning.solver import TIME_FACTOR, Candidate, choose, problem_of, weigh
from tests.conftest import tiny_config as _tiny


def tiny_config(**overrides):
    """fp32 only: the planner would otherwise weigh bf16 beside every option (twice the estimates)."""
    return _tiny(**{"precision": "fp32", **overrides})


def _candidate(regime, rank, peak, step_s, fits=True, micro=64):
    return Candidate(regime, 1 if regime == "e2e" else 4, micro, rank == 1, "fp32", peak, step_s, fits, rank)


def test_the_rule_keeps_the_most_exact_way_within_the_time_factor():
    full = _candidate("e2e", 0, 100, 1.0, fits=False)
    micro = _candidate("e2e", 2, 40, 1.5, micro=16)
    module_wise = _candidate("sequential", 3, 50, 1.2)
    assert choose([full, micro, module_wise])[0] is micro  # 1.25x the fastest: within the factor
    slow = _candidate("e2e", 2, 40, 1.2 * TIME_FACTOR * 1.01, micro=2)
    chosen, why = choose([full, slow, module_wise])
    assert chosen is module_wise and "fastest" in why  # e2e on micro-batches of 2: too slow
    assert choose([_candidate("e2e", 0, 100, 1.0), module_wise])[0].regime == "e2e"
    with pytest.raises(NoPlanFits) as exc:
        choose([full, _candidate("sequential", 3, 70, 1.2, fits=False)])
    assert exc.value.needed_bytes == 70


def _floors(synthetic_data, **overrides):
    """Each candidate's smallest peak (what it needs with micro-batches of 1), by regime."""
    cfg = tiny_config(budget=1, **overrides)
    candidates = weigh(cfg, *problem_of(cfg, synthetic_data[2]))
    assert not any(c.fits for c in candidates)
    return candidates


def test_without_a_budget_auto_is_e2e(synthetic_data):
    p = plan(tiny_config(regime="auto"), data=synthetic_data, quiet=True)
    assert p.regime == "e2e" and p.micro_batch is None and not p.checkpoint_blocks
    assert p.solver["chosen"] == "e2e" and p.solver["requested_regime"] == "auto"


def test_checkpointing_when_e2e_fits_only_with_it(synthetic_data):
    """Between the checkpointed and the plain e2e peak at full batch, the same gradients recomputed."""
    free = plan(tiny_config(regime="auto", checkpoint_blocks=False), data=synthetic_data, quiet=True)
    e2e_peak = free.solver["candidates"][0]["estimated_peak_bytes"]
    p = plan(tiny_config(regime="auto", budget=e2e_peak - 1), data=synthetic_data, quiet=True)
    rows = {c["candidate"]: c for c in p.solver["candidates"]}
    assert not rows["e2e"]["fits"] and rows["e2e, checkpointing"]["fits"]
    assert p.regime == "e2e" and p.checkpoint_blocks and p.micro_batch is None, p.solver


def test_micro_batches_when_even_the_checkpointed_step_is_too_big(synthetic_data):
    p = plan(tiny_config(regime="auto"), data=synthetic_data, quiet=True)
    over = plan(tiny_config(regime="auto", budget=p.solver["candidates"][0]["estimated_peak_bytes"] - 1),
                data=synthetic_data, quiet=True)
    ckpt_peak = {c["candidate"]: c for c in over.solver["candidates"]}["e2e, checkpointing"]["estimated_peak_bytes"]
    p = plan(tiny_config(regime="auto", budget=ckpt_peak - 1), data=synthetic_data, quiet=True)
    assert p.regime == "e2e" and p.micro_batch is not None and p.micro_batch < 64, p.solver


def test_module_wise_where_e2e_cannot_fit(synthetic_data):
    """Below what e2e needs with micro-batches of 1 (the whole network's weights, gradients and
    momentum), one module at a time still fits."""
    small = dict(modules=9, batch_size=8, checkpoint_blocks=False)  # few micro-batches to try: seconds
    floors = _floors(synthetic_data, **small)
    e2e_floor = min(c.peak_bytes for c in floors if c.regime == "e2e")
    module_floor = next(c.peak_bytes for c in floors if c.regime != "e2e")
    assert module_floor < e2e_floor
    budget = (module_floor + e2e_floor) // 2
    p = plan(tiny_config(regime="auto", budget=budget, **small), data=synthetic_data, quiet=True)
    assert p.regime == "sequential" and p.num_modules == 9, p.solver


def test_nothing_fits_names_the_smallest_budget(synthetic_data):
    with pytest.raises(UserError, match="smallest"):
        plan(tiny_config(regime="auto", budget=1000, batch_size=8, checkpoint_blocks=False), data=synthetic_data,
             quiet=True)


def test_an_auto_run_trains_what_was_chosen_and_records_why(synthetic_data, tmp_path):
    p = plan(tiny_config(regime="auto", checkpoint_blocks=False), data=synthetic_data, quiet=True)
    budget = p.solver["candidates"][0]["estimated_peak_bytes"] - 1
    result = train(tiny_config(regime="auto", budget=budget, checkpoint_blocks=False, epochs=1),
                   data=synthetic_data, out=tmp_path / "run", quiet=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["plan"]["regime"] == "e2e" and summary["plan"]["micro_batch"] < 64
    assert summary["plan"]["solver"]["chosen"].startswith("e2e, micro-batches of")
    assert 0 < summary["planning_s"] < summary["wall_time_s"] + 60  # recorded beside the run's own wall time
    assert result.modules[-1]["test_accuracy"] is not None


def test_the_cli_dry_run_prints_the_candidates_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "edgetrgl", "train", "--regime", "auto", "--dry-run",
                           "--dataset", "synthetic", "--set", "model_options={width = 4}", "--budget", "1GB",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "ways to train" in proc.stderr and "chosen" in proc.stderr
    assert not out.exists()


def test_an_explicit_e2e_over_its_budget_accumulates_instead_of_refusing(synthetic_data):
    free = plan(tiny_config(regime="e2e", checkpoint_blocks=False, budget=10**9), data=synthetic_data, quiet=True)
    budget = free.estimates["estimated_peak_bytes"] // 2
    p = plan(tiny_config(regime="e2e", checkpoint_blocks=False, budget=budget), data=synthetic_data, quiet=True)
    assert p.regime == "e2e" and p.num_modules == 1 and p.micro_batch < 64
    assert p.estimates["estimated_peak_bytes"] <= budget


@pytest.mark.parametrize("option, flag", [({"data_parallel": True}, "--data-parallel"),
                                          ({"device_profile": "rpi4-2gb"}, "--device-profile")])
def test_what_auto_does_not_weigh_is_refused_in_one_line_with_the_reason(synthetic_data, option, flag):
    with pytest.raises(UserError) as exc:
        plan(tiny_config(regime="auto", budget=10**9, **option), data=synthetic_data, quiet=True)
    message = str(exc.value)
    assert "\n" not in message and flag in message and "choose --regime sequential or e2e" in message
