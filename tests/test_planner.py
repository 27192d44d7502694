"""Budget parsing, the planner (balanced split, --modules auto, micro-batching) and enforcement."""

import itertools

import pytest
import torch
from torch import nn

from edgetrgl.config import TrainConfig, parse_size
from edgetrgl.errors import UserError
from edgetrgl.memory.estimate import estimate_sequential
from edgetrgl.memory.planner import _builder_from_blocknet, linear_partition, plan_modules
from edgetrgl.memory.tensor import track_peak
from edgetrgl.models import create_model
from edgetrgl.modular import Stage
from edgetrgl.api import train
from edgetrgl.step import local_step
from tests.conftest import tiny_config
from tests.test_losses import Affine


@pytest.mark.parametrize("text,expected", [
    ("2GB", 2 * 10**9), ("1.5GiB", int(1.5 * 2**30)), ("512MB", 512 * 10**6), ("800MiB", 800 * 2**20),
    ("100", 100), (" 3 gb ", 3 * 10**9), ("64KiB", 65536),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "2XB", "-1GB", "0", "0MB", "1e9", "two", "1.2.3GB"])
def test_parse_size_rejects(text):
    with pytest.raises(UserError):
        parse_size(text)


def test_linear_partition_matches_brute_force():
    weights = [5, 1, 1, 8, 2, 2, 2, 9, 1, 1]
    inputs = [1] * len(weights)
    for k in (2, 3, 4):
        bounds = linear_partition(weights, inputs, k)
        edges = lambda b: [0] + list(b) + [len(weights)]  # noqa: E731
        cost = lambda b: max(sum(weights[s:e]) + inputs[s] for s, e in zip(edges(b)[:-1], edges(b)[1:]))  # noqa: E731
        best = min(cost(c) for c in itertools.combinations(range(1, len(weights)), k - 1))
        assert len(bounds) == k - 1 and cost(bounds) == best


def _resnet56_build():
    blocknet = lambda: create_model("resnet56", in_channels=3, image_size=32, width=8)  # noqa: E731
    return _builder_from_blocknet(blocknet, (32, 3, 32, 32), 10)


def test_balanced_split_lowers_the_largest_module():
    build = _resnet56_build()
    equal = plan_modules(build, 27, (32, 3, 32, 32), 10, num_modules=4, split="equal")
    balanced = plan_modules(build, 27, (32, 3, 32, 32), 10, num_modules=4, split="balanced")
    assert balanced.peak_bytes < equal.peak_bytes
    assert balanced.boundaries[0] < equal.boundaries[0]  # the wide early blocks get smaller modules


def test_modules_auto_picks_the_fewest_that_fit_and_micro_batches_when_needed():
    build = _resnet56_build()
    one = plan_modules(build, 27, (32, 3, 32, 32), 10, num_modules=1).peak_bytes
    budget = int(one * 0.5)
    plan = plan_modules(build, 27, (32, 3, 32, 32), 10, num_modules="auto", split="balanced", budget=budget)
    assert plan.peak_bytes <= budget and plan.micro_batch == 32
    fewer = plan_modules(build, 27, (32, 3, 32, 32), 10, num_modules=len(plan.modules) - 1, split="balanced")
    assert fewer.peak_bytes > budget
    single_block = plan_modules(build, 27, (32, 3, 32, 32), 10, num_modules=27).peak_bytes
    squeezed = plan_modules(build, 27, (32, 3, 32, 32), 10, num_modules="auto", budget=int(single_block * 0.7))
    assert squeezed.micro_batch < 32 and squeezed.peak_bytes <= int(single_block * 0.7)


def test_infeasible_budget_names_the_smallest_that_would_fit():
    blocknet = lambda: create_model("resnet20", in_channels=3, image_size=16, width=4)  # noqa: E731
    build = _builder_from_blocknet(blocknet, (8, 3, 16, 16), 10)
    with pytest.raises(UserError, match="smallest budget that would fit"):
        plan_modules(build, 9, (8, 3, 16, 16), 10, num_modules="auto", budget=1000)


def test_estimate_matches_measurement_for_the_same_plan():
    build = lambda: _resnet56_build()(3, [4, 12])  # noqa: E731
    estimated = estimate_sequential(build, (32, 3, 32, 32), 10)
    torch.manual_seed(0)
    net = build()
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    for k in range(3):
        stage, head = net.stages[k], net.heads[k]
        opt = torch.optim.SGD(list(stage.parameters()) + list(head.parameters()), lr=0.1, momentum=0.9)
        measured = track_peak(lambda: local_step(stage, head, opt, x, y, (1.0, 1.0), 0.0), stage, head, opt, x, y)
        assert abs(measured.peak_bytes - estimated[k].peak_bytes) <= 0.10 * estimated[k].peak_bytes
        with torch.no_grad():
            x = stage.eval()(x)


def test_micro_batching_gives_the_full_batch_gradient_without_batchnorm():
    torch.manual_seed(0)
    stage, head = Stage([Affine(0.3), Affine(-0.2)]), nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    x, y = torch.randn(12, 3, 4, 4), torch.randint(0, 5, (12,))
    grads = []
    for micro in (None, 5):
        s, h = Stage([Affine(0.3), Affine(-0.2)]), nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
        s.load_state_dict(stage.state_dict()), h.load_state_dict(head.state_dict())
        opt = torch.optim.SGD(list(s.parameters()) + list(h.parameters()), lr=0.0)
        out, _ = local_step(s, h, opt, x, y, (1.0, 0.5), 0.0, micro)
        grads.append([p.grad.clone() for p in list(s.parameters()) + list(h.parameters())])
        assert out.shape == x.shape
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_run_under_a_budget_stays_under_it(synthetic_data):
    free = train(tiny_config(epochs=1), data=synthetic_data, out=None, quiet=True)
    budget = int(max(m["peak_bytes"] for m in free.modules) * 0.6)
    result = train(tiny_config(epochs=1, budget=budget, split="balanced"), data=synthetic_data, out=None, quiet=True)
    assert all(m["peak_bytes"] <= budget for m in result.modules)
    for m in result.modules:  # measured within 10% of the planner's estimate
        assert abs(m["peak_bytes"] - m["estimated_peak_bytes"]) <= 0.10 * m["estimated_peak_bytes"]
    assert result.extra["plan"]["estimates"]["estimated_peak_bytes"] <= budget


def test_e2e_over_budget_is_a_clear_error(synthetic_data):
    with pytest.raises(UserError, match="use --regime sequential"):
        train(tiny_config(regime="e2e", budget=10_000), data=synthetic_data, out=None, quiet=True)


def test_config_rejects_bad_modules():
    with pytest.raises(UserError, match="--modules"):
        TrainConfig(modules=0)
    with pytest.raises(UserError, match="--modules"):
        TrainConfig(modules="many")


def test_micro_batch_bisection_finds_the_scans_answer_with_fewer_estimates():
    """A synthetic cost (one module: fixed + per-sample, +1 copy of the output once chunked, a
    little curvature): for every budget the bisection picks the largest halving that fits, as the
    scan did, and estimates no more often; below micro-batches of 1 it names that need."""
    from edgetrgl.memory.planner import ModulePlan, NoPlanFits, Plan, _fit_micro_batch, micro_batch_candidates

    batch = 128

    def peak(micro: int) -> int:
        return 1000 + 37 * micro + int(0.05 * micro ** 1.5) + (batch * 5 if micro < batch else 0)

    calls = []

    def estimate(bounds, micro):
        calls.append(micro)
        return Plan(bounds, [ModulePlan(1, (0, 1), peak(micro))], batch, micro, None)

    full = estimate([], batch)
    sizes = micro_batch_candidates(batch)
    for budget in range(peak(1) - 3, peak(sizes[0]) + 3, 7):
        calls.clear()
        scan = next((m for m in sizes if peak(m) <= budget), None)
        if scan is None:
            with pytest.raises(NoPlanFits, match="smallest budget"):
                _fit_micro_batch(estimate, full, batch, budget)
            continue
        assert _fit_micro_batch(estimate, full, batch, budget).micro_batch == scan
        assert len(calls) <= sizes.index(scan) + 1  # the scan estimated every size down to its answer
