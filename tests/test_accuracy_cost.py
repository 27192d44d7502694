"""benchmarks/_accuracy_cost.py: the accuracy cost beside each bench method comes from the study's rows,
paired by seed: a converged sweep where there is one, the 1-epoch full-set runs otherwise, and
BatchNorm's effect on micro-batches from the equal-memory runs. Rows made up here, no training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import _accuracy_cost as ac  # noqa: E402
import fashionmnist_plateau as plateau  # noqa: E402


def _row(part, regime, method, seed, last, epochs=1, recipe="ours", val=None):
    return {"part": part, "regime": regime, "method": method, "seed": seed, "last": last, "epochs": epochs,
            "recipe": recipe, "val_accuracy": [val if val is not None else last]}


def _plateau(method, regime, lr, val_by_epochs, test_by_epochs):
    """The lr grid (seed 0, ``lr`` best) and the sweep at ``lr`` (3 seeds per epochs run)."""
    rows = [_row(plateau.PART, regime, method, 0, 0.5, plateau.GRID_EPOCHS, plateau.recipe_of(other), val=0.5)
            for other in plateau.LRS if other != lr]
    for epochs, val in val_by_epochs.items():
        for seed in range(plateau.SEEDS):
            rows.append(_row(plateau.PART, regime, method, seed, test_by_epochs[epochs][seed], epochs,
                             plateau.recipe_of(lr), val=val))
    return rows


@pytest.fixture
def runs(tmp_path):
    rows = (
        # e2e converges at 10 epochs (20 adds under half a point), VanGL at 5; TRGL has only run 5
        _plateau("e2e", "e2e", 0.05, {5: 0.80, 10: 0.85, 20: 0.852},
                 {5: [0.8] * 3, 10: [0.86, 0.87, 0.88], 20: [0.9] * 3})
        + _plateau("vangl", "sequential", 0.025, {5: 0.80, 10: 0.802},
                   {5: [0.84, 0.85, 0.86], 10: [0.9] * 3})
        + _plateau("trgl", "sequential", 0.025, {5: 0.80}, {5: [0.99] * 3})
        # the full set at 1 epoch per module
        + [_row("full", "e2e", "e2e", s, 0.90) for s in (0, 1)]
        + [_row("full", "sequential", "trgl", s, v) for s, v in ((0, 0.91), (1, 0.91))]
        # equal memory: e2e with micro-batches of 16 a point lower on every seed; sequential TRGL never run
        + [_row("equal_memory", "e2e", "e2e", s, 0.85) for s in range(3)]
        + [_row("equal_memory", "e2e", "e2e-mb16", s, 0.84) for s in range(3)]
    )
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_converged_method_is_paired_with_converged_e2e(runs):
    cost = ac.accuracy_costs(["sequential-vangl"], runs)["sequential-vangl"]
    # VanGL at 5 epochs (0.84, 0.85, 0.86) against e2e at 10 (0.86, 0.87, 0.88), seed by seed
    assert cost.source == "converged" and cost.seeds == 3
    assert cost.delta_vs_e2e == pytest.approx(-2.0) and cost.half_width == pytest.approx(0.0, abs=1e-9)
    assert cost.label.startswith("-2.0 ± 0.0 pt vs e2e (converged, 3 seeds)")


def test_a_sweep_still_running_falls_back_to_the_full_set_and_says_so(runs):
    cost = ac.accuracy_costs(["sequential-trgl"], runs)["sequential-trgl"]
    assert cost.source == "1 epoch per module" and cost.delta_vs_e2e == pytest.approx(1.0)
    assert "(1 epoch per module, 2 seeds)" in cost.label


def test_micro_batches_carry_the_measured_batchnorm_effect_or_say_it_is_unmeasured(runs):
    costs = ac.accuracy_costs(["e2e", "checkpoint+mb8", "e2e+mb16", "sequential-trgl+mb8", "e2e+bf16"], runs)
    assert costs["e2e"].label == "= e2e (exact)"
    assert costs["checkpoint+mb8"].micro == (8, 16, pytest.approx(-1.0), pytest.approx(0.0, abs=1e-9))
    assert "(measured at 16): -1.0 ± 0.0 pt" in costs["checkpoint+mb8"].label
    assert "micro-batches (at 16): -1.0 ± 0.0 pt" in costs["checkpoint+mb8"].short
    assert "measured at" not in costs["e2e+mb16"].label  # measured at that very size
    assert costs["sequential-trgl+mb8"].micro is None
    assert "BatchNorm per micro-batch of 8: not measured" in costs["sequential-trgl+mb8"].label
    assert "bf16: not measured" in costs["e2e+bf16"].label
