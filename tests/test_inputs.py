"""Module inputs of the sequential regimes (training/inputs.py): a full disk falls back within the plan."""

from __future__ import annotations

import errno

import pytest
import torch
from torch import nn

from edgetrgl.cache.placement import CachePlan
from edgetrgl.training.inputs import ModuleInputs
from edgetrgl.training.run import plan_run
from tests.conftest import tiny_config


def _disk_cache_plan(folder, *, bytes_needed: int, ram_limit: int | None) -> CachePlan:
    return CachePlan(requested="disk", mode="disk", dtype="fp32", views=1, folder=str(folder), scratch=False,
                     keep=False, bytes_needed=bytes_needed, reason="test", ram_limit=ram_limit)


@pytest.mark.parametrize("ram_limit, expected", [(None, "host"), (2**20, "none")])
def test_a_full_disk_falls_back_within_the_budgets_ram(synthetic_data, tmp_path, monkeypatch, ram_limit, expected):
    """ENOSPC while writing a 4 MiB disk cache: with plenty of free RAM and no RAM limit it moves to
    host memory; when the plan gave the cache only 1 MiB of a shared-memory budget, it must not take
    the RAM the budget gave the module being trained: it recomputes the prefix instead."""
    train_set, test_set, _ = synthetic_data
    stages = nn.ModuleList([nn.Identity(), nn.Identity()])
    recomputed = []
    inputs = ModuleInputs(stages, train_set, test_set, _disk_cache_plan(tmp_path, bytes_needed=4 * 2**20,
                                                                       ram_limit=ram_limit),
                          batch_size=64, seed=0, augment=False, device=torch.device("cpu"),
                          on_recompute=lambda: recomputed.append(True))
    fill = inputs._fill

    def disk_full(split, k, views, source, stage, observe=None):
        if inputs.mode == "disk":
            raise OSError(errno.ENOSPC, "No space left on device")
        return fill(split, k, views, source, stage, observe)

    monkeypatch.setattr(inputs, "_fill", disk_full)
    inputs.module_done(0)
    assert inputs.mode == expected
    assert bool(recomputed) == (expected == "none")
    assert (inputs.cache_bytes > 0) == (expected == "host")
    inputs.close()


def test_the_plan_hands_the_cache_its_ram_limit_on_shared_memory(synthetic_data):
    plan, _ = plan_run(tiny_config(device_profile="rpi4-2gb", budget="1500MiB", epochs=1), synthetic_data[2])
    module_peak = plan.estimates["estimated_peak_bytes"]
    assert plan.memory_kind == "shared" and plan.cache.ram_limit == plan.budget - module_peak
    separate, _ = plan_run(tiny_config(epochs=1), synthetic_data[2])
    assert separate.cache.ram_limit is None


class _Widths(nn.Module):
    """A frozen module that records how many samples each call gets."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv, self.calls = nn.Conv2d(channels, 4, 3, padding=1), []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return torch.relu(self.conv(x))


@pytest.mark.parametrize("mode", ["host", "none"])
def test_frozen_modules_run_a_micro_batch_at_a_time(synthetic_data, mode):
    """With micro-batches, filling a cache or recomputing the prefix never runs a frozen module on
    more samples than a training step holds, and module 2 gets the same inputs as at full batch."""
    train_set, test_set, _ = synthetic_data
    torch.manual_seed(0)
    channels = train_set[0][0].shape[0]
    stage = _Widths(channels).eval()
    stages = nn.ModuleList([stage, nn.Identity()])

    def module_2_inputs(micro_batch):
        plan = CachePlan(requested=mode, mode=mode, dtype="fp32", views=1, folder=None, scratch=False, keep=False,
                         bytes_needed=0, reason="test")
        inputs = ModuleInputs(stages, train_set, test_set, plan, batch_size=64, seed=0, augment=False,
                              device=torch.device("cpu"), micro_batch=micro_batch)
        stage.calls.clear()
        inputs.module_done(0)
        batches = [x for x, _ in inputs.train_batches(1, epoch=0)] + [x for x, _ in inputs.eval_batches(1)]
        inputs.close()
        return torch.cat(batches), list(stage.calls)

    whole, whole_calls = module_2_inputs(None)
    chunked, chunked_calls = module_2_inputs(8)
    assert max(whole_calls) == 64 and max(chunked_calls) == 8
    assert sum(chunked_calls) == sum(whole_calls)
    assert torch.allclose(whole, chunked, rtol=1e-5, atol=1e-6)
