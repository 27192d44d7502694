"""The regimes (training/regimes/): every one learns well above chance on tiny data and reports
every module truthfully; the registry takes a new regime as one function and one line."""

from __future__ import annotations

import json

import pytest
import torch

from edgetrgl.data import make_loader
from edgetrgl.errors import UserError
from edgetrgl.step import local_step
from edgetrgl.training import evaluate, train
from edgetrgl.training.epoch import run_epoch
from edgetrgl.training.evaluation import evaluate_heads
from edgetrgl.training.regimes import Regime, RegimeTraits, get_regime, register, regime_names, unregister
from edgetrgl.training.trainer import Trainer
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
    # the reported accuracies are the trained heads' own: evaluated again from the returned network
    assert evaluate(result.net, synthetic_data[1], cfg.batch_size) == accs
    assert result.summary()["best_module"] == {"module": accs.index(max(accs)) + 1, "test_accuracy": max(accs)}
    assert all(m["peak_bytes"] > 0 for m in result.modules if m["epochs"])


def test_sequential_epochs_grow_with_depth(synthetic_data):
    cfg = tiny_config(regime="sequential", epochs=1, epochs_step=1)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert [m["epochs"] for m in result.modules] == [1, 2, 3]


def test_multiplier_schedule_trains(synthetic_data):
    cfg = tiny_config(regime="parallel", tau_schedule="multiplier", multiplier_every=2, epochs=4)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert result.last_module["test_accuracy"] > 4 * CHANCE


def test_sequential_keeps_finished_modules_off_the_device_and_frozen(synthetic_data, tmp_path, monkeypatch):
    """Once module 1 has finished it is offloaded (here to disk: its tensors leave memory) while
    module 2 trains, and its weights end the run exactly as they were when it finished."""
    seen = {}
    log_module = Trainer.log_module

    def watch(trainer, k, lap):  # called right after module k is frozen and released
        stage = trainer.net.stages[0]
        seen[k] = {"weights": {n: t.clone() for n, t in trainer.offloader.stage_state(0).items()},
                   "devices": {p.device.type for p in stage.parameters()},
                   "head": {p.device.type for p in trainer.net.heads[0].parameters()}}
        log_module(trainer, k, lap)

    monkeypatch.setattr(Trainer, "log_module", watch)
    cfg = tiny_config(regime="sequential", epochs=1, modules=2, offload="disk", cache="host")
    result = train(cfg, data=synthetic_data, out=tmp_path / "run", quiet=True)
    assert seen[0]["devices"] == {"meta"} and seen[1]["devices"] == {"meta"}  # on disk, not in memory
    assert seen[0]["head"] == {"cpu"}
    final = {n: t for n, t in result.net.stages[0].state_dict().items()}
    assert final.keys() == seen[0]["weights"].keys()
    assert all(torch.equal(final[n], seen[0]["weights"][n]) for n in final)  # untouched while module 2 trained
    assert all(torch.equal(seen[1]["weights"][n], seen[0]["weights"][n]) for n in final)
    assert result.modules[0]["cache_bytes"] > 0  # module 1's outputs were cached for module 2
    assert result.modules[1]["cache_bytes"] == 0  # nothing cached after the last module


# ---- the registry ------------------------------------------------------------------------------
@pytest.fixture
def toy_regime():
    """A toy regime that trains only the last module; unregistered afterwards, so later tests (and
    the CLI's choices) never see it."""

    def run(trainer):
        net, cfg = trainer.net, trainer.cfg
        net.to(trainer.device)
        K = net.num_modules

        def step(x, y, global_step):
            with torch.no_grad():
                for k in range(K - 1):
                    x = net.stages[k](x)
            trainer.set_lr(K - 1, global_step, cfg.epochs * trainer.steps_per_epoch)
            return [local_step(net.stages[K - 1], net.heads[K - 1], trainer.optimizers[K - 1], x, y,
                               trainer.tau.weights(K - 1), cfg.label_smoothing)[1]]

        for epoch in range(trainer.position["epoch"], cfg.epochs):
            loader = make_loader(trainer.train_set, cfg.batch_size, shuffle=True, augment=False, seed=cfg.seed, epoch=epoch)
            run_epoch(trainer, modules=[K - 1], epoch=epoch, batches=loader, step=step, label="toy",
                      steps_per_epoch=trainer.steps_per_epoch)
        accuracies = evaluate_heads(net, trainer.test_set, cfg.batch_size, trainer.device)
        for k in range(K):
            trainer.modules[k]["test_accuracy"] = accuracies[k]

    register(Regime("last-only", run, RegimeTraits(modular=True, needs_cache=False, plans_budget=False), "toy"))
    yield "last-only"
    unregister("last-only")


def test_a_toy_regime_is_one_function_and_one_registry_line(toy_regime, synthetic_data, tmp_path):
    """Every batch trains only the last module (a toy): the shared epoch bookkeeping does the rest."""
    assert toy_regime in regime_names()
    result = train(tiny_config(regime=toy_regime, epochs=1), data=synthetic_data, out=tmp_path / "run", quiet=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["module"] for r in records if r["event"] == "epoch"] == [3]  # only the last module trained
    assert result.extra["plan"]["regime"] == toy_regime


def test_the_toy_regime_is_gone_after_its_test():
    assert "last-only" not in regime_names()
    with pytest.raises(UserError, match="--regime must be one of"):
        get_regime("last-only")


def test_unknown_regime_is_one_line(synthetic_data):
    with pytest.raises(UserError, match="--regime must be one of .*sequential"):
        train(tiny_config(regime="nope"), data=synthetic_data, out=None, quiet=True)


def test_traits_replace_name_comparisons():
    assert not get_regime("e2e").traits.modular and not get_regime("e2e").traits.transport
    assert get_regime("sequential").traits.needs_cache and get_regime("multilap").traits.plans_budget
    assert not get_regime("parallel").traits.needs_cache
