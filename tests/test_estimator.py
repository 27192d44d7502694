"""The planner's estimator (edgetrgl/memory/estimator.py): each module step measured once, with the
figures of a from-scratch estimate, so the plans are those of a planner that estimates everything
afresh; and the estimates count the optimizer ``--optimizer`` names."""

import pytest

from edgetrgl.api import plan
from edgetrgl.memory import estimator as estimator_module
from edgetrgl.memory.estimate import estimate_sequential, optimizer_of, sequential_work
from edgetrgl.memory.estimator import ModuleEstimate, SequentialEstimator
from edgetrgl.memory.planner import plan_modules
from edgetrgl.network import build_network, input_shape
from edgetrgl.planning.solver import problem_of, weigh
from edgetrgl.planning.speed import CPU
from tests.conftest import tiny_config

BATCH = 8  # few chunks per micro-batch estimate
SMALL = dict(model="kmresnet4", model_options={"width": 8}, modules=2, batch_size=BATCH, precision="fp32")  # 4 blocks


def _problem(synthetic_data, **overrides):
    spec, cfg = synthetic_data[2], tiny_config(**{**SMALL, **overrides})

    def build(num, bounds):
        return build_network(cfg.network, spec, num_modules=num, boundaries=bounds)

    return build, (BATCH, *input_shape(spec)), spec.num_classes


class FromScratch(SequentialEstimator):
    """The reference: every request estimated afresh (a new network, warmed up with the step it
    measures), every module, every time, as the planner did before it shared estimates."""

    def modules(self, num_modules, boundaries, micro_batch=None, *, precision="fp32", checkpoint_blocks=False,
                transport=True, budget=None, work=False):
        build = lambda: self.build(num_modules, boundaries)  # noqa: E731
        options = dict(micro_batch=micro_batch, precision=precision, checkpoint_blocks=checkpoint_blocks,
                       make_optimizer=self.make_optimizer)
        peaks = estimate_sequential(build, self.batch_shape, self.num_classes, transport, **options)
        works = sequential_work(build, self.batch_shape, self.num_classes, transport, **options)
        return [ModuleEstimate(p, w) for p, w in zip(peaks, works)]


def test_each_estimate_is_the_from_scratch_figure_whatever_was_measured_before(synthetic_data):
    build, shape, classes = _problem(synthetic_data)
    shared = SequentialEstimator(build, shape, classes, count_work=True)
    reference = FromScratch(build, shape, classes)
    for micro, precision, ckpt in ((None, "fp32", False), (2, "fp32", False), (4, "bf16", True), (2, "fp32", True)):
        got = shared.modules(2, [2], micro, precision=precision, checkpoint_blocks=ckpt, work=True)
        want = reference.modules(2, [2], micro, precision=precision, checkpoint_blocks=ckpt)
        assert [(g.peak, g.work) for g in got] == [(w.peak, w.work) for w in want], (micro, precision, ckpt)


def test_a_budget_stops_at_the_first_module_over_it_and_the_rest_follow_on_request(synthetic_data):
    build, shape, classes = _problem(synthetic_data)
    estimator = SequentialEstimator(build, shape, classes)
    whole = [e.peak.peak_bytes for e in FromScratch(build, shape, classes).modules(2, [3], 2)]
    assert whole[0] > whole[1]  # the first module (the stem and three blocks) is the larger
    cut = estimator.modules(2, [3], 2, budget=whole[1])
    assert [e.peak.peak_bytes for e in cut] == whole[:1]
    assert [e.peak.peak_bytes for e in estimator.modules(2, [3], 2)] == whole
    assert estimator.measured == 2  # each module once: the stop measured nothing twice


@pytest.mark.parametrize("options", [
    dict(budget=None, checkpoint_blocks="auto", precision="auto"),  # every option fits: all priced
    dict(budget="tight", checkpoint_blocks="auto"),  # micro-batches against checkpointing
    dict(budget="tight", checkpoint_blocks=False),
    dict(budget="tight", num_modules="auto", checkpoint_blocks="auto"),
])
def test_the_planner_makes_the_plans_of_a_from_scratch_planner(synthetic_data, options):
    build, shape, classes = _problem(synthetic_data)
    options = {"num_modules": 2, "speed": lambda precision: CPU, **options}
    if options["budget"] == "tight":  # between the checkpointed and the plain peak of the largest module
        plain = FromScratch(build, shape, classes).modules(2, [2])
        ckpt = FromScratch(build, shape, classes).modules(2, [2], checkpoint_blocks=True)
        options["budget"] = (max(e.peak.peak_bytes for e in plain) + max(e.peak.peak_bytes for e in ckpt)) // 2
    fast = plan_modules(build, 4, shape, classes, **options)
    slow = plan_modules(build, 4, shape, classes, estimator=FromScratch(build, shape, classes), **options)
    assert fast.to_dict() == slow.to_dict()


def test_no_step_is_measured_twice_from_the_solver_to_the_plan(synthetic_data, monkeypatch):
    """``--regime auto``: the solver's candidates share their estimates, and the chosen plan is not
    planned again by make_plan."""
    measured = []
    original = SequentialEstimator._measure

    def record(self, options, k, work):
        measured.append((self.batch_shape, options, k))
        return original(self, options, k, work)

    monkeypatch.setattr(estimator_module.SequentialEstimator, "_measure", record)
    cfg = tiny_config(**{**SMALL, "regime": "auto", "modules": 4, "checkpoint_blocks": False})
    floors = weigh(cfg.replace(budget=1), *problem_of(cfg, synthetic_data[2]))  # micro-batches of 1: what each needs
    e2e_floor = min(c.peak_bytes for c in floors if c.regime == "e2e")
    module_floor = next(c.peak_bytes for c in floors if c.regime != "e2e")
    assert module_floor < e2e_floor
    measured.clear()
    p = plan(cfg.replace(budget=(module_floor + e2e_floor) // 2), data=synthetic_data, quiet=True)
    assert p.regime == "sequential", p.solver
    assert len(measured) == len(set(measured)), "a step was measured twice"
    chosen = next(c for c in p.solver["candidates"] if c["candidate"] == p.solver["chosen"])
    assert p.estimates["estimated_peak_bytes"] == chosen["estimated_peak_bytes"]  # the solver's own estimate


def test_adam_is_estimated_with_two_state_tensors_per_parameter(synthetic_data):
    """Adam keeps two moments per parameter (and a step counter per tensor) where SGD keeps one
    momentum buffer: each module's planned peak is higher by its parameters' bytes (and the counters)."""
    spec = synthetic_data[2]
    sgd, adam = (plan(tiny_config(**SMALL, optimizer=name, budget=10**9, checkpoint_blocks=False),
                      data=synthetic_data, quiet=True) for name in ("sgd", "adam"))
    net = build_network(tiny_config(**SMALL).network, spec, num_modules=sgd.num_modules, boundaries=sgd.boundaries)
    for module, (a, s) in enumerate(zip(adam.estimates["modules"], sgd.estimates["modules"])):
        params = [*net.stages[module].parameters(), *net.heads[module].parameters()]
        extra = sum(p.numel() * p.element_size() for p in params) + 4 * len(params)  # exp_avg_sq; fp32 step counters
        assert a["estimated_peak_bytes"] - s["estimated_peak_bytes"] == extra, module


def test_the_optimizer_follows_the_config():
    import torch

    params = [torch.nn.Parameter(torch.zeros(3))]
    assert isinstance(optimizer_of(tiny_config(optimizer="adam"))(params), torch.optim.Adam)
    sgd = optimizer_of(tiny_config(momentum=0.5, weight_decay=0.0))(params)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.5


def test_the_lower_bound_counts_the_optimizers_state():
    from edgetrgl.planning.bound import state_copies

    assert state_copies("sgd", 0.9) == 3 and state_copies("sgd", 0.0) == 2 and state_copies("adam", 0.9) == 4
