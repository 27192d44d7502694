"""Every regime learns well above chance on tiny data, and the run reports every module."""

import pytest

from edgetrgl.training import train
from tests.conftest import tiny_config

CHANCE = 0.10


@pytest.mark.parametrize("regime,method", [
    ("e2e", "vangl"), ("parallel", "trgl"), ("parallel", "vangl"),
    ("sequential", "trgl"), ("sequential", "vangl"), ("multilap", "trgl"),
])
def test_regime_learns_above_chance(regime, method, synthetic_data):
    cfg = tiny_config(regime=regime, method=method, epochs=3 if regime != "multilap" else 2, laps=2)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    expected_modules = 1 if regime == "e2e" else 3
    assert len(result.modules) == expected_modules
    accs = [m["test_accuracy"] for m in result.modules]
    assert all(a is not None for a in accs)
    assert result.last_module["test_accuracy"] > 4 * CHANCE, accs
    assert result.best_module["test_accuracy"] >= max(accs)
    assert all(m["peak_bytes"] > 0 for m in result.modules if m["epochs"])


def test_sequential_epochs_grow_with_depth(synthetic_data):
    cfg = tiny_config(regime="sequential", epochs=1, epochs_step=1)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert [m["epochs"] for m in result.modules] == [1, 2, 3]


def test_multiplier_schedule_trains(synthetic_data):
    cfg = tiny_config(regime="parallel", tau_schedule="multiplier", multiplier_every=2, epochs=4)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert result.last_module["test_accuracy"] > 4 * CHANCE


def test_sequential_keeps_finished_modules_off_the_device_and_frozen(synthetic_data):
    """After training, module 1's weights are exactly what they were when it finished."""
    cfg = tiny_config(regime="sequential", epochs=1, modules=2)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert result.modules[0]["cache_bytes"] > 0  # module 1's outputs were cached for module 2
    assert result.modules[1]["cache_bytes"] == 0  # nothing cached after the last module
