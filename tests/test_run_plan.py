"""The run plan (planning/run_plan.py): made once, it records the request and what was resolved,
and it is pure: the regime's traits, the ranks and the process's facts come in as data."""

from __future__ import annotations

import json
import math
import sys

import pytest

from edgetrgl.devices.machine import MachineFacts
from edgetrgl.errors import UserError
from edgetrgl.planning.run_plan import make_plan
from edgetrgl.api import train
from edgetrgl.data import load_dataset
from edgetrgl.training.regimes import get_regime
from tests.conftest import tiny_config

MACHINE = MachineFacts(free_ram_bytes=8 << 30, free_disk_bytes=64 << 30, cpu_name="test CPU", cpu_count=2,
                       footprint_bytes=300 << 20)
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
    plan, _ = make_plan(cfg, spec, machine=MACHINE, traits=traits, world_size=3)
    assert plan.layout == [[0, 1], [1, 2], [2, 3]] and len(plan.estimates["module_peaks"]) == 3
    budget = max(plan.estimates["rank_peaks"])
    assert budget < sum(plan.estimates["module_peaks"])
    fits, _ = make_plan(cfg.replace(budget=budget), spec, machine=MACHINE, traits=traits, world_size=3)
    assert fits.layout == plan.layout and fits.estimates["estimated_peak_bytes"] <= budget
    with pytest.raises(UserError, match="pipeline rank 0 trains module\\(s\\) 1-3 and needs about"):
        make_plan(cfg.replace(budget=budget), spec, machine=MACHINE, traits=traits, world_size=1)
    with pytest.raises(UserError, match="4 ranks but only 3 module"):
        make_plan(cfg, spec, machine=MACHINE, traits=traits, world_size=4)


def test_make_plan_measures_nothing_itself(synthetic_data):
    """A whole-process budget needs the footprint measured by the caller (every rank bounds its own
    allocator, the planning rank measures): make_plan refuses to guess it."""
    with pytest.raises(ValueError, match="prepare_process"):
        make_plan(tiny_config(device_profile="rpi4-2gb"), synthetic_data[2], machine=MACHINE,
                  traits=get_regime("sequential").traits)


def _forbid_probes(monkeypatch):
    """Every way the planner could read the machine or touch the disk raises (not
    torch.cuda.is_available: fake tensors ask it themselves; the plan takes it from the facts)."""
    import builtins
    import io
    import os
    import pathlib
    import shutil
    import tempfile

    import psutil
    import torch

    def probe(*args, **kwargs):
        raise AssertionError("make_plan probed the machine")

    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc"):
            probe()
        return real_open(path, *args, **kwargs)

    for owner, name in [(psutil, "virtual_memory"), (psutil, "Process"), (shutil, "disk_usage"), (os, "makedirs"),
                        (tempfile, "mkdtemp"), (pathlib.Path, "mkdir"),
                        (torch.cuda, "get_device_name"), (torch.cuda, "get_device_properties")]:
        monkeypatch.setattr(owner, name, probe)
    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(io, "open", no_proc)


def test_make_plan_is_a_function_of_its_arguments(synthetic_data, monkeypatch):
    """Same facts, same plan, with every probe of the machine (free RAM and disk, /proc/cpuinfo, the
    GPU) and every folder creation raising: the caller measures once and makes the cache folder."""
    import dataclasses

    from edgetrgl.devices.budget import resolve_budget
    from edgetrgl.devices.process import ProcessFacts
    from edgetrgl.devices.registry import get_profile

    spec, traits = synthetic_data[2], get_regime("sequential").traits
    weighed = tiny_config(cache="auto", precision="auto", split="balanced")  # the time model reads the CPU's bf16
    board = tiny_config(device_profile="rpi4-2gb", budget="1500MiB", cache="auto")
    facts = ProcessFacts(resolve_budget(get_profile("rpi4-2gb"), board.budget), footprint_bytes=300 << 20)
    small_ram = dataclasses.replace(MACHINE, free_ram_bytes=1 << 10)  # a host cache does not fit: disk
    cases = [(weighed, MACHINE, None), (board, small_ram, facts)]
    # torch's own one-time set-up (its compile cache folder, on the first fake tensor) happens here
    before = [make_plan(cfg, spec, machine=m, traits=traits, process=p)[0].to_dict() for cfg, m, p in cases]
    _forbid_probes(monkeypatch)
    for (cfg, machine, process), expected in zip(cases, before):
        first, _ = make_plan(cfg, spec, machine=machine, traits=traits, process=process)
        again, _ = make_plan(cfg, spec, machine=machine, traits=traits, process=process)
        assert first.to_dict() == again.to_dict() == expected
        assert first.cache.scratch and first.cache.folder is None  # no folder made: the caller makes it
    assert first.cache.mode == "disk" and "free on disk" in first.cache.reason


def test_an_infeasible_budget_is_refused_from_the_lower_bound_before_any_search(synthetic_data, monkeypatch):
    import edgetrgl.planning.run_plan as run_plan

    def search(*args, **kwargs):
        raise AssertionError("the planner searched")

    monkeypatch.setattr(run_plan, "plan_modules", search)
    monkeypatch.setattr(run_plan, "estimate_parallel", search)
    lines = []
    with pytest.raises(UserError, match=r"smallest budget that could fit is at least [\d.]+ KiB"):
        make_plan(tiny_config(budget="10KB"), synthetic_data[2], machine=MACHINE,
                  traits=get_regime("sequential").traits, progress=lines.append)
    assert lines == []  # refused before the search's first progress line


def test_the_lower_bound_is_below_the_smallest_plan(synthetic_data):
    """The bound never refuses a budget that a plan fits: at micro-batches of 1 the estimate is above it."""
    from edgetrgl.memory.estimate import estimate_sequential
    from edgetrgl.network import build_blocknet, build_network, input_shape
    from edgetrgl.planning.bound import lower_bound

    spec, cfg = synthetic_data[2], tiny_config()
    bound = lower_bound(build_blocknet(cfg.network, spec), input_shape(spec), cfg.batch_size, boundaries=[1, 2])
    peaks = estimate_sequential(lambda: build_network(cfg.network, spec, num_modules=3, boundaries=[1, 2]),
                                (cfg.batch_size, *input_shape(spec)), spec.num_classes, micro_batch=1)
    assert 0.5 * max(p.peak_bytes for p in peaks) < bound.bytes <= max(p.peak_bytes for p in peaks)


def test_host_cache_fits_under_half_of_the_usable_ram():
    from edgetrgl.cache.placement import host_cache_fits

    assert host_cache_fits(499, 1000, None) and not host_cache_fits(500, 1000, None)
    assert not host_cache_fits(499, 1000, 900)  # the plan's ram_limit caps what is usable
    assert host_cache_fits(449, 10_000, 900)


def test_the_plan_decides_the_transport_term():
    from edgetrgl.planning.run_plan import plan_transport

    sequential, e2e = get_regime("sequential").traits, get_regime("e2e").traits
    assert plan_transport(tiny_config(method="trgl"), sequential)
    assert not plan_transport(tiny_config(method="vangl"), sequential)
    assert plan_transport(tiny_config(method="vangl", transport="on"), sequential)
    assert not plan_transport(tiny_config(method="trgl"), e2e)  # end to end has no transport term


def test_end_to_end_trains_one_module_and_keeps_the_requested_split_for_fine_tuning():
    from edgetrgl.planning.run_plan import RunPlan, as_planned, requested_split

    cfg, e2e, sequential = tiny_config(modules=3), get_regime("e2e").traits, get_regime("sequential").traits
    assert requested_split(cfg, e2e) == (1, None) and requested_split(cfg, sequential) == (3, None)
    plan = RunPlan.__new__(RunPlan)
    plan.num_modules, plan.boundaries = 2, [2]
    assert as_planned(cfg, plan, e2e) is cfg
    assert (as_planned(cfg, plan, sequential).modules, as_planned(cfg, plan, sequential).boundaries) == (2, [2])
