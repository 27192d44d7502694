"""Core v2: the regime registry, the run plan made once, and typed config sections."""

from __future__ import annotations

import json
import sys

import pytest

from edgetrgl.config import NetworkConfig, TrainConfig, load_toml
from edgetrgl.errors import UserError
from edgetrgl.step import local_step
from edgetrgl.training import train
from edgetrgl.training.epoch import run_epoch
from edgetrgl.training.evaluation import evaluate_heads
from edgetrgl.training.regimes import Regime, RegimeTraits, get_regime, register, regime_names
from tests.conftest import tiny_config


def test_a_toy_regime_is_one_function_and_one_registry_line(synthetic_data, tmp_path):
    """Every batch trains only the last module (a toy): the shared epoch bookkeeping does the rest."""

    def run(trainer):
        net, cfg = trainer.net, trainer.cfg
        net.to(trainer.device)
        K = net.num_modules

        def step(x, y, global_step):
            with __import__("torch").no_grad():
                for k in range(K - 1):
                    x = net.stages[k](x)
            trainer.set_lr(K - 1, global_step, cfg.epochs * trainer.steps_per_epoch)
            return [local_step(net.stages[K - 1], net.heads[K - 1], trainer.optimizers[K - 1], x, y,
                               trainer.tau.weights(K - 1), cfg.label_smoothing)[1]]

        from edgetrgl.data import make_loader

        for epoch in range(trainer.position["epoch"], cfg.epochs):
            loader = make_loader(trainer.train_set, cfg.batch_size, shuffle=True, augment=False, seed=cfg.seed, epoch=epoch)
            run_epoch(trainer, modules=[K - 1], epoch=epoch, batches=loader, step=step, label="toy",
                      steps_per_epoch=trainer.steps_per_epoch)
        accuracies = evaluate_heads(net, trainer.test_set, cfg.batch_size, trainer.device)
        for k in range(K):
            trainer.modules[k]["test_accuracy"] = accuracies[k]

    register(Regime("last-only", run, RegimeTraits(modular=True, needs_cache=False, plans_budget=False), "toy"))
    assert "last-only" in regime_names()
    result = train(tiny_config(regime="last-only", epochs=1), data=synthetic_data, out=tmp_path / "run", quiet=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["module"] for r in records if r["event"] == "epoch"] == [3]  # only the last module trained
    assert result.extra["plan"]["regime"] == "last-only"


def test_unknown_regime_is_one_line(synthetic_data):
    with pytest.raises(UserError, match="--regime must be one of .*sequential"):
        train(tiny_config(regime="nope"), data=synthetic_data, out=None, quiet=True)


def test_traits_replace_name_comparisons():
    assert not get_regime("e2e").traits.modular and not get_regime("e2e").traits.transport
    assert get_regime("sequential").traits.needs_cache and get_regime("multilap").traits.plans_budget
    assert not get_regime("parallel").traits.needs_cache


def test_plan_records_request_and_resolution(synthetic_data, tmp_path):
    train(tiny_config(cache="auto", epochs=1), data=synthetic_data, out=tmp_path / "r", quiet=True)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert config["config"]["cache"] == "auto"  # what the user asked for is kept
    assert config["plan"]["cache"]["mode"] == "host" and config["plan"]["cache"]["reason"]
    assert summary["plan"]["device"] == "cpu" and summary["plan"]["memory_kind"] == "shared"
    assert summary["plan"]["num_modules"] == 3


def test_disk_cache_size_counts_the_storage_dtype(synthetic_data):
    sizes = {}
    for dtype in ("fp32", "fp16"):
        result = train(tiny_config(cache="host", cache_dtype=dtype, epochs=1), data=synthetic_data, out=None, quiet=True)
        sizes[dtype] = result.extra["plan"]["cache"]["bytes_needed"]
    assert sizes["fp16"] * 2 == sizes["fp32"]


def test_config_sections_and_flat_spelling_agree(tmp_path):
    flat = TrainConfig(modules=3, lr=0.1, budget="1MiB")
    by_section = TrainConfig(network=NetworkConfig(modules=3), lr=0.1, budget=2**20)
    assert flat == by_section and flat.network.modules == 3 and flat.budget == 2**20
    assert flat.replace(modules=5).modules == 5 and flat.modules == 3
    sectioned = tmp_path / "run.toml"
    sectioned.write_text('[network]\nmodules = 2\n[optim]\nlr = 0.2\n[memory]\nbudget = "1GB"\n')
    cfg = TrainConfig.from_dict(load_toml(sectioned))
    assert (cfg.modules, cfg.lr, cfg.budget) == (2, 0.2, 10**9)
    assert TrainConfig.from_dict(cfg.to_sections()) == cfg


@pytest.mark.parametrize("values, message", [
    ({"network": {"lr": 0.1}}, "belongs in \\[optim\\]"),
    ({"bogus": 1}, "unknown config key"),
    ({"budget": "12 parsecs"}, "unknown size unit"),
    ({"lr_schedule": "step"}, "--lr-schedule must be one of"),
])
def test_config_errors_name_the_field(values, message):
    with pytest.raises(UserError, match=message):
        TrainConfig.from_dict(values)


def test_balanced_split_without_a_budget(synthetic_data):
    e2e = train(tiny_config(regime="e2e", split="balanced", epochs=1), data=synthetic_data, out=None, quiet=True)
    assert e2e.extra["plan"]["num_modules"] == 1  # e2e has nothing to balance, and no budget to check
    parallel = train(tiny_config(regime="parallel", split="balanced", epochs=1), data=synthetic_data, out=None, quiet=True)
    assert parallel.extra["plan"]["boundaries"] is not None and parallel.net.num_modules == 3


def test_device_profile_plans_the_whole_process(synthetic_data):
    result = train(tiny_config(device_profile="rpi4-2gb", budget="1500MiB", epochs=1), data=synthetic_data, out=None,
                   quiet=True)
    process = result.extra["plan"]["process"]
    assert process["profile"] == "rpi4-2gb" and process["scope"] == "process"
    assert 0 < process["footprint_bytes"] < process["budget_bytes"]
    # the tensors get what the runtime and the weights in RAM leave
    assert result.extra["plan"]["budget"] == process["tensor_budget_bytes"] < process["budget_bytes"]
    assert all(m["anon_bytes"] > 0 for m in result.modules)


def test_device_profile_names_the_smallest_budget_when_nothing_fits(synthetic_data):
    with pytest.raises(UserError, match="smallest budget"):
        train(tiny_config(device_profile="rpi4-2gb", budget="64MiB"), data=synthetic_data, out=None, quiet=True)


def test_unknown_device_profile_is_one_line(synthetic_data):
    with pytest.raises(UserError, match="rpi4-2gb"):
        train(tiny_config(device_profile="rpi9-1tb"), data=synthetic_data, out=None, quiet=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_device_profile_bounds_allocator_slack(synthetic_data):
    # without it, freed activations stay in glibc's heap and a 700 MiB cgroup OOM-kills the default run
    result = train(tiny_config(device_profile="rpi4-2gb", budget="1500MiB", epochs=1), data=synthetic_data, out=None,
                   quiet=True)
    assert "128 KiB" in result.extra["plan"]["process"]["allocator"]
