"""``--regime auto``: weigh every way to fit a budget, end-to-end backprop included, and pick one.

What a user with a memory limit does without us is ordinary backprop with activation
checkpointing and gradient accumulation over micro-batches: exact gradients (BatchNorm's
statistics aside) in any memory, paid in time. So the solver prices, with the same fake-tensor
estimates and time model as the module planner:

- e2e at full batch, e2e with checkpointing inside the network, and each with the largest
  micro-batch that fits (the module planner at K = 1, transport off: one module is the network);
- the module-wise plans the planner weighs for the sequential regime (K, split, micro-batch,
  checkpointing inside modules, precision).

The rule (:func:`choose`): the most exact candidate that fits, unless it is modelled more than
:data:`TIME_FACTOR` times slower than the fastest candidate that fits; exactness in this order:
e2e at full batch, e2e with checkpointing (the same gradients, recomputed), e2e with micro-batches
(BatchNorm sees smaller batches), then module-wise training (a different method: each module learns
from its own head). Fewer modules come before more within the module-wise plans, as the planner
already prefers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edgetrgl.config import TrainConfig, format_bytes
from edgetrgl.memory.estimate import OptimizerFactory, default_sgd
from edgetrgl.memory.estimator import SequentialEstimator
from edgetrgl.memory.planner import BuildFn, NoPlanFits, Plan, modelled_seconds, plan_modules
from edgetrgl.memory.work import MachineSpeed

TIME_FACTOR = 2.0  # an e2e candidate is kept while modelled at most 2x the fastest candidate that fits
MODULE_WISE = "sequential"  # the module-wise regime weighed: the one that keeps one module on the device


@dataclass
class Candidate:
    """One way to train under the budget, priced."""

    regime: str
    modules: int
    micro_batch: int  # == batch_size: full batch
    checkpoint_blocks: bool
    precision: str
    peak_bytes: int
    step_s: float | None  # the time model's seconds per batch (every module once)
    fits: bool
    rank: int  # exactness: 0 is the most exact
    plan: Plan | None = None

    def describe(self) -> str:
        parts = [self.regime if self.regime == "e2e" else f"{self.regime} K={self.modules}"]
        if self.checkpoint_blocks:
            parts.append("checkpointing")
        if self.plan is not None and self.micro_batch < self.plan.batch_size:
            parts.append(f"micro-batches of {self.micro_batch}")
        if self.precision != "fp32":
            parts.append(self.precision)
        return ", ".join(parts)

    def to_dict(self, steps_per_epoch: int) -> dict[str, Any]:
        return {"candidate": self.describe(), "regime": self.regime, "modules": self.modules,
                "micro_batch": self.micro_batch, "checkpoint_blocks": self.checkpoint_blocks,
                "precision": self.precision, "fits": self.fits, "estimated_peak_bytes": self.peak_bytes,
                "modelled_epoch_s": None if self.step_s is None else round(self.step_s * steps_per_epoch, 3)}


@dataclass
class Choice:
    """What the solver chose, the config that trains it, and every candidate with the reason."""

    chosen: Candidate
    config: TrainConfig
    candidates: list[Candidate]
    why: str
    steps_per_epoch: int

    def to_dict(self) -> dict[str, Any]:
        return {"requested_regime": AUTO, "chosen": self.chosen.describe(), "why": self.why, "time_factor": TIME_FACTOR,
                "candidates": [c.to_dict(self.steps_per_epoch) for c in self.candidates]}


def weigh(cfg: TrainConfig, build: BuildFn, num_blocks: int, batch_shape: tuple[int, ...], num_classes: int,
          speed: Callable[[str], MachineSpeed], transport: bool,
          make_optimizer: OptimizerFactory = default_sgd) -> list[Candidate]:
    """Every candidate, fitted to ``cfg.budget`` and priced.

    One estimator serves every candidate: each (network split, micro-batch, checkpointing, precision)
    is measured once.

    Args:
        build: ``(num_modules, boundaries) -> ModularNet`` (the module planner's builder).
        transport: whether the module-wise candidate carries the transport term (e2e never does).
        make_optimizer: the optimizer the run's modules get (its state counts).
    """
    budget, precision = cfg.budget, cfg.precision
    # without a budget every candidate fits and is priced: count its work beside its peak; under one,
    # most estimates are probes of a search, and only the plans that fit are priced (one more pass each)
    estimator = SequentialEstimator(build, batch_shape, num_classes, make_optimizer=make_optimizer,
                                    count_work=budget is None)
    out: list[Candidate] = []

    def e2e(ckpt: bool, limit: int | None) -> Plan:  # the planner at K = 1: one module is the network
        return plan_modules(build, num_blocks, batch_shape, num_classes, num_modules=1, budget=limit,
                            transport=False, precision=precision, checkpoint_blocks=ckpt, speed=speed,
                            estimator=estimator)

    for ckpt in ((False, True) if cfg.checkpoint_blocks == "auto" else (bool(cfg.checkpoint_blocks),)):
        full = _priced("e2e", lambda: e2e(ckpt, None), estimator, speed, transport=False)
        full.fits = budget is None or full.peak_bytes <= budget
        out.append(full)
        if full.fits and not ckpt:
            break  # e2e fits at full batch: checkpointing would only add time
        if not full.fits:  # the largest micro-batch that fits, gradients accumulated to the batch
            out.append(_priced("e2e", lambda: e2e(ckpt, budget), estimator, speed, transport=False))
    modules = 4 if cfg.modules == "auto" and budget is None else cfg.modules
    out.append(_priced(MODULE_WISE, lambda: plan_modules(build, num_blocks, batch_shape, num_classes,
                                                         num_modules=modules, split=cfg.split, budget=budget,
                                                         transport=transport, boundaries=cfg.boundaries,
                                                         precision=precision, checkpoint_blocks=cfg.checkpoint_blocks,
                                                         speed=speed, estimator=estimator),
                       estimator, speed, transport=transport))
    return out


def choose(candidates: list[Candidate]) -> tuple[Candidate, str]:
    """The most exact candidate that fits within :data:`TIME_FACTOR` of the fastest that fits.

    Raises:
        NoPlanFits: none fits; the message names the smallest budget that would fit any of them.
    """
    fitting = [c for c in candidates if c.fits]
    if not fitting:
        smallest = min(candidates, key=lambda c: c.peak_bytes)
        raise NoPlanFits(f"no way to train fits the budget: the smallest, {smallest.describe()}, needs "
                         f"{format_bytes(smallest.peak_bytes)} ({smallest.peak_bytes / 1e9:.3g} GB)", smallest.peak_bytes)
    fastest = min(fitting, key=lambda c: c.step_s or 0.0)
    for c in sorted(fitting, key=lambda c: (c.rank, c.step_s or 0.0)):  # the faster of equally exact ones
        if c.step_s is None or fastest.step_s is None or c.step_s <= TIME_FACTOR * fastest.step_s:
            if c is fastest:
                return c, "the most exact way that fits, and the fastest"
            slower = (c.step_s or 0.0) / (fastest.step_s or 1.0)
            return c, (f"the most exact way that fits within {TIME_FACTOR:g}x of the fastest "
                       f"({fastest.describe()}; this one is modelled at {slower:.2f}x)")
    raise AssertionError("the fastest candidate is within the factor of itself")


def solve(cfg: TrainConfig, build: BuildFn, num_blocks: int, batch_shape: tuple[int, ...], num_classes: int,
          speed: Callable[[str], MachineSpeed], transport: bool, make_optimizer: OptimizerFactory = default_sgd, *,
          num_train: int) -> Choice:
    """Weigh, choose, and return the concrete configuration that trains the choice."""
    candidates = weigh(cfg, build, num_blocks, batch_shape, num_classes, speed, transport, make_optimizer)
    chosen, why = choose(candidates)
    resolved = cfg.replace(regime=chosen.regime,
                           micro_batch=chosen.micro_batch if chosen.micro_batch < batch_shape[0] else None,
                           checkpoint_blocks=chosen.checkpoint_blocks, precision=chosen.precision)
    if chosen.regime == MODULE_WISE:
        resolved = resolved.replace(modules=chosen.modules, boundaries=chosen.plan.boundaries or None if chosen.plan else None)
    steps = max(1, -(-num_train // batch_shape[0]))
    return Choice(chosen, resolved, candidates, why, steps)


def _priced(regime: str, fit: Callable[[], Plan], estimator: SequentialEstimator,
            speed: Callable[[str], MachineSpeed], transport: bool) -> Candidate:
    """A candidate from the planner's fitted plan, its time priced by the time model; one that does
    not fit keeps the smallest peak the planner found for it."""
    try:
        plan = fit()
    except NoPlanFits as exc:
        return Candidate(regime, 1 if regime == "e2e" else 0, 1, False, "fp32", exc.needed_bytes, None, False,
                         _rank(regime, False, True))
    if plan.modelled_step_s is None:
        plan.modelled_step_s = modelled_seconds(plan, estimator, transport, speed)
    micro = plan.micro_batch < plan.batch_size
    return Candidate(regime, len(plan.modules), plan.micro_batch, plan.checkpoint_blocks, plan.precision,
                     plan.peak_bytes, plan.modelled_step_s, True, _rank(regime, plan.checkpoint_blocks, micro), plan)


def _rank(regime: str, checkpoint_blocks: bool, micro: bool) -> int:
    """Exactness, most exact first: e2e, e2e recomputing, e2e on micro-batches, module-wise."""
    if regime != "e2e":
        return 3
    return 2 if micro else (1 if checkpoint_blocks else 0)


AUTO = "auto"  # the --regime value the solver resolves


def solve_for(cfg: TrainConfig, spec, model=None) -> Choice:
    """:func:`solve` for a run's configuration and data.

    Raises:
        UserError: ``--data-parallel`` or ``--device-profile`` (not weighed: see below), or nothing fits
            the budget.

    Not weighed yet, each refused in one line. ``--data-parallel``: every rank would have to take the
    choice from rank 0 before the batch is sharded, and it must be weighed at the per-rank batch (the
    choice is made here before torchrun's ranks exist). ``--device-profile``: its budget covers the
    whole process, and what the process holds beside the tensors depends on the candidate (the
    sequential regime keeps frozen weights and a host cache in RAM, e2e neither) and on the runtime's
    footprint, measured only once planning starts; the candidates' tensor peaks alone would fit
    budgets the process exceeds.
    """
    from edgetrgl.errors import UserError

    if cfg.data_parallel:  # the choice is not shared across ranks, nor weighed at the per-rank batch
        raise UserError("--regime auto is not weighed with --data-parallel (the ranks would each choose, at the "
                        "global batch): choose --regime sequential or e2e with --data-parallel")
    if cfg.device_profile:  # its budget covers the whole process, which the candidates' tensor peaks do not
        raise UserError("--regime auto is not weighed with --device-profile (its budget covers the whole process: "
                        "the runtime, and for sequential the frozen weights and host cache, beside the tensors "
                        "weighed): choose --regime sequential or e2e with the profile")
    problem = problem_of(cfg, spec, model)
    return solve(cfg, *problem, num_train=spec.num_train)


def problem_of(cfg: TrainConfig, spec, model=None) -> tuple:
    """``(build, num_blocks, batch_shape, num_classes, speed, transport, make_optimizer)``: what
    :func:`weigh` and :func:`solve` take, for a run's configuration and data."""
    from edgetrgl.memory.estimate import optimizer_of
    from edgetrgl.network import build_blocknet, build_network, input_shape
    from edgetrgl.objectives import uses_transport
    from edgetrgl.planning.device import resolve_device
    from edgetrgl.planning.speed import machine_speed

    device = resolve_device(cfg.device)

    def build(num: int, bounds: list[int] | None):
        return build_network(cfg.network, spec, build_blocknet(cfg.network, spec, model), num_modules=num,
                             boundaries=bounds, method=cfg.method, objective_options=cfg.objective_options)

    num_blocks = len(build_blocknet(cfg.network, spec, model).blocks)
    batch_shape = (cfg.batch_size, *input_shape(spec))
    return (build, num_blocks, batch_shape, spec.num_classes, lambda p: machine_speed(device, p),
            uses_transport(cfg.method, cfg.transport), optimizer_of(cfg))
