"""The run plan (planning/run_plan.py): made once, it records the request and what was resolved,
and it is pure: the regime's traits, the ranks and the process's facts come in as data."""

from __future__ import annotations

import json
import math
import sys

import pytest

from edgetrgl.errors import UserError
from edgetrgl.planning.run_plan import make_plan
from edgetrgl.api import train
from edgetrgl.data import load_dataset
from edgetrgl.training.regimes import get_regime
from tests.conftest import tiny_config

ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def test_plan_records_request_and_resolution(synthetic_data, tmp_path):
    train(tiny_config(cache="auto", epochs=1), data=synthetic_data, out=tmp_path / "r", quiet=True)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert config["config"]["cache"] == "auto"  # what the user asked for is kept
    assert config["plan"]["cache"]["mode"] == "host" and config["plan"]["cache"]["reason"]
    assert summary["plan"]["device"] == "cpu" and summary["plan"]["memory_kind"] == "shared"
    assert summary["plan"]["num_modules"] == 3


def test_disk_cache_size_counts_the_storage_dtype(tmp_path):
    """The shards a disk cache writes take one element size per value of its dtype (fp16 and bf16
    half of fp32), and the plan's bytes_needed is what the largest module's cache takes on disk."""
    few = load_dataset("synthetic", num_train=128, num_test=64, seed=0)  # three runs: keep them short
    on_disk, planned = {}, {}
    for dtype in ("fp32", "fp16", "bf16"):
        folder = tmp_path / dtype
        result = train(tiny_config(cache="disk", cache_dtype=dtype, cache_dir=str(folder), keep_cache=True, epochs=1),
                       data=few, out=None, quiet=True)
        assert result.extra["plan"]["cache"]["mode"] == "disk"
        planned[dtype] = result.extra["plan"]["cache"]["bytes_needed"]
        on_disk[dtype] = {}
        for shard in sorted(folder.glob("*/view*_shard*.bin")):
            manifest = json.loads((shard.parent / "manifest.json").read_text())
            assert manifest["dtype"] == dtype
            values = manifest["num_samples"] * math.prod(manifest["feature_shape"])
            on_disk[dtype][shard.relative_to(folder).as_posix()] = shard.stat().st_size
            assert shard.stat().st_size == values * ELEMENT_BYTES[dtype]
    assert on_disk["fp32"] and on_disk["fp16"].keys() == on_disk["fp32"].keys() == on_disk["bf16"].keys()
    assert all(on_disk["fp16"][name] * 2 == on_disk["bf16"][name] * 2 == size for name, size in on_disk["fp32"].items())
    for dtype, shards in on_disk.items():
        per_module = {}
        for name, size in shards.items():  # lap1-module1-train/view0_shard0.bin: train and test of one module
            module = name.split("/")[0].rsplit("-", 1)[0]
            per_module[module] = per_module.get(module, 0) + size
        assert planned[dtype] == max(per_module.values())


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


def test_the_pipeline_checks_each_ranks_modules_against_the_budget(synthetic_data):
    """One rank holds only its own modules: a budget that one rank's share fits is enough (the whole
    network in one rank is refused), and the layout is part of the plan."""
    spec, traits = synthetic_data[2], get_regime("pipeline").traits
    cfg = tiny_config(regime="pipeline", model_options={"width": 16})
    plan, _ = make_plan(cfg, spec, traits=traits, world_size=3)
    assert plan.layout == [[0, 1], [1, 2], [2, 3]] and len(plan.estimates["module_peaks"]) == 3
    budget = max(plan.estimates["rank_peaks"])
    assert budget < sum(plan.estimates["module_peaks"])
    fits, _ = make_plan(cfg.replace(budget=budget), spec, traits=traits, world_size=3)
    assert fits.layout == plan.layout and fits.estimates["estimated_peak_bytes"] <= budget
    with pytest.raises(UserError, match="pipeline rank 0 trains module\\(s\\) 1-3 and needs about"):
        make_plan(cfg.replace(budget=budget), spec, traits=traits, world_size=1)
    with pytest.raises(UserError, match="4 ranks but only 3 module"):
        make_plan(cfg, spec, traits=traits, world_size=4)


def test_make_plan_measures_nothing_itself(synthetic_data):
    """A whole-process budget needs the footprint measured by the caller (every rank bounds its own
    allocator, the planning rank measures): make_plan refuses to guess it."""
    with pytest.raises(ValueError, match="prepare_process"):
        make_plan(tiny_config(device_profile="rpi4-2gb"), synthetic_data[2], traits=get_regime("sequential").traits)
