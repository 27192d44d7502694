"""The budget planner: choose module boundaries and a micro-batch so that every module fits.

Everything here is estimated with fake tensors (see ``estimate.py``): no memory is allocated, so
the plan for a network far larger than this machine's memory still takes seconds. The estimates come
from one :class:`~edgetrgl.memory.estimator.SequentialEstimator` per plan (or the solver's, shared by
its candidates): each module step is measured once, and a probe of the search stops at the first
module over the budget.

Cost model for the split: each block is first estimated as a module of its own; its weight is that
peak less its input batch (the input of a block inside a module is the previous block's activation,
already counted). A module's cost is the sum of its blocks' weights plus its first input. The split
that minimises the largest module cost (a linear partition, solved exactly by dynamic programming)
is then checked with a full estimate of the chosen plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from edgetrgl.config import format_bytes
from edgetrgl.errors import UserError
from edgetrgl.memory.estimate import OptimizerFactory, default_sgd
from edgetrgl.memory.estimator import BuildFn, SequentialEstimator
from edgetrgl.memory.work import MachineSpeed
from edgetrgl.modular import ModularNet, split_blocks

class NoPlanFits(UserError):
    """Nothing fits the budget; ``needed_bytes`` is the smallest budget that would fit the split."""

    def __init__(self, message: str, needed_bytes: int) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes


@dataclass
class ModulePlan:
    module: int
    blocks: tuple[int, int]
    estimated_peak_bytes: int


@dataclass
class Plan:
    """What the planner chose. ``boundaries`` go to ``build_modular``; ``micro_batch`` to the loop;
    ``checkpoint_blocks`` and ``precision`` to the step."""

    boundaries: list[int]
    modules: list[ModulePlan]
    batch_size: int
    micro_batch: int
    budget: int | None
    notes: list[str] = field(default_factory=list)
    checkpoint_blocks: bool = False
    precision: str = "fp32"
    modelled_step_s: float | None = None  # the time model's seconds for one batch through every module
    candidates: list[dict] = field(default_factory=list)  # every option weighed, for the record
    complete: bool = True  # every module estimated (False: the search stopped at the first over the budget)

    @property
    def peak_bytes(self) -> int:
        return max(m.estimated_peak_bytes for m in self.modules)

    @property
    def exact(self) -> bool:
        """Same arithmetic as the plain step: no micro-batches (BatchNorm's statistics) and fp32."""
        return self.micro_batch >= self.batch_size and self.precision == "fp32"

    def describe(self) -> str:
        parts = [f"K={len(self.modules)}"]
        if self.micro_batch < self.batch_size:
            parts.append(f"micro-batches of {self.micro_batch}")
        if self.checkpoint_blocks:
            parts.append("checkpointing inside modules")
        if self.precision != "fp32":
            parts.append(self.precision)
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"boundaries": self.boundaries, "batch_size": self.batch_size, "micro_batch": self.micro_batch,
                "budget": self.budget, "estimated_peak_bytes": self.peak_bytes, "notes": self.notes,
                "checkpoint_blocks": self.checkpoint_blocks, "precision": self.precision,
                "modelled_step_s": self.modelled_step_s, "candidates": self.candidates,
                "modules": [{"module": m.module, "blocks": list(m.blocks), "estimated_peak_bytes": m.estimated_peak_bytes}
                            for m in self.modules]}


def block_weights(build: BuildFn, num_blocks: int, batch_shape: tuple[int, ...], num_classes: int,
                  transport: bool = True, estimator: SequentialEstimator | None = None) -> tuple[list[int], list[int]]:
    """Per-block ``(weights, input_bytes)``: each block estimated as a module of its own."""
    estimator = estimator or SequentialEstimator(build, batch_shape, num_classes)
    peaks = [e.peak for e in estimator.modules(num_blocks, None, transport=transport)]
    inputs = [p.by_category.get("inputs", 0) for p in peaks]
    return [p.peak_bytes - i for p, i in zip(peaks, inputs)], inputs


def linear_partition(weights: list[int], inputs: list[int], num_modules: int) -> list[int]:
    """Boundaries minimising the largest ``sum(weights[s:e]) + inputs[s]`` over K contiguous groups."""
    n = len(weights)
    prefix = [0]
    for w in weights:
        prefix.append(prefix[-1] + w)
    cost = lambda s, e: prefix[e] - prefix[s] + inputs[s]  # noqa: E731
    INF = float("inf")
    # best[k][e]: smallest achievable max cost splitting blocks [0, e) into k groups
    best = [[INF] * (n + 1) for _ in range(num_modules + 1)]
    cut = [[0] * (n + 1) for _ in range(num_modules + 1)]
    best[0][0] = 0
    for k in range(1, num_modules + 1):
        for e in range(k, n + 1):
            for s in range(k - 1, e):
                value = max(best[k - 1][s], cost(s, e))
                if value < best[k][e]:
                    best[k][e], cut[k][e] = value, s
    bounds, e = [], n
    for k in range(num_modules, 0, -1):
        e = cut[k][e]
        bounds.append(e)
    return sorted(bounds)[1:]  # drop the leading 0


def balanced_boundaries(build_blocknet: Callable, num_modules: int, batch_shape: tuple[int, ...], num_classes: int,
                        transport: bool = True) -> list[int]:
    """Boundaries of K memory-balanced ("equally heavy") modules.

    Args:
        build_blocknet: returns a fresh :class:`BlockNet` (called inside a fake-tensor mode).
        num_modules: K.
        batch_shape: ``(B, C, H, W)`` of the input batch.
        num_classes: for the heads.
        transport: TRGL (True) or VanGL.
    """
    build = _builder_from_blocknet(build_blocknet, batch_shape, num_classes)
    num_blocks = len(_count_blocks(build_blocknet))
    if num_modules > num_blocks:
        raise UserError(f"--modules {num_modules} is larger than the model's {num_blocks} blocks")
    weights, inputs = block_weights(build, num_blocks, batch_shape, num_classes, transport)
    return linear_partition(weights, inputs, num_modules)


def plan_modules(build: BuildFn, num_blocks: int, batch_shape: tuple[int, ...], num_classes: int, *,
                 num_modules: int | str = 4, split: str = "equal", budget: int | None = None,
                 transport: bool = True, boundaries: list[int] | None = None, precision: str = "fp32",
                 checkpoint_blocks: bool | str = False, speed: Callable[[str], MachineSpeed] | None = None,
                 progress: Callable[[str], None] | None = None, make_optimizer: OptimizerFactory = default_sgd,
                 estimator: SequentialEstimator | None = None) -> Plan:
    """Choose the fastest plan whose every module fits ``budget``.

    For each step option left to the planner (``checkpoint_blocks="auto"``: with and without
    checkpointing inside modules; ``precision="auto"``: fp32 and bf16) it finds the split that fits
    (K as given or the fewest that fit, then the largest micro-batch that fits), prices each with the
    time model (``speed``: the work counted on fake tensors, see ``work.py``) and keeps the fastest.
    An inexact plan (micro-batches change BatchNorm's statistics; bf16 rounds) must be clearly
    faster, by :data:`INEXACT_MARGIN`, to win over an exact one that fits.

    Args:
        build: ``(num_modules, boundaries) -> ModularNet``, called inside a fake-tensor mode.
        num_blocks: blocks in the network.
        batch_shape: ``(B, C, H, W)`` of one training batch.
        num_classes: for the heads.
        num_modules: K, or ``"auto"`` for the fewest modules that fit the budget.
        split: ``equal`` (same number of blocks) or ``balanced`` (same memory).
        budget: bytes for one module's tensors on the compute device, or None.
        transport: TRGL (True) or VanGL.
        boundaries: explicit boundaries (then neither K nor split is searched).
        precision: fp32, bf16, fp16, or ``"auto"``.
        checkpoint_blocks: True, False, or ``"auto"``.
        speed: precision -> the device's rates for the time model (needed when options are weighed).
        progress: called with one line per step of the search (None: silent).
        make_optimizer: the optimizer each module gets (``--optimizer``: its state counts).
        estimator: the estimates to share with other plans of the same network and batch (the
            solver's; each step measured once); None: this plan's own (``make_optimizer``'s).

    Raises:
        NoPlanFits: nothing fits; the message names the smallest budget that would.
    """
    if num_modules == "auto" and budget is None:
        raise UserError("--modules auto needs a --budget to aim at")
    options = [(c, p) for c in ((False, True) if checkpoint_blocks == "auto" else (bool(checkpoint_blocks),))
               for p in (("fp32", "bf16") if precision == "auto" else (precision,))]
    weights = inputs = None
    if estimator is None:  # without a budget every option fits and is priced: count its work beside its peak
        estimator = SequentialEstimator(build, batch_shape, num_classes, make_optimizer=make_optimizer,
                                        count_work=speed is not None and len(options) > 1 and budget is None)
    if split == "balanced":
        weights, inputs = block_weights(build, num_blocks, batch_shape, num_classes, transport, estimator)

    def bounds_for(k: int) -> list[int]:
        if boundaries is not None:
            return list(boundaries)
        if split == "balanced":
            return linear_partition(weights, inputs, k)
        return [s for s, _ in split_blocks(num_blocks, k)][1:]

    say = progress or (lambda line: None)
    fitting, failures = [], []
    for ckpt, prec in options:
        if ckpt and any(_plain(p, prec) for p in fitting) and num_modules != "auto":
            continue  # the same split fits at full batch without recomputing: checkpointing would only add time
        say(f"planning: step option {prec}" + (", checkpointing inside modules" if ckpt else "")
            + f" ({options.index((ckpt, prec)) + 1} of {len(options)})")
        plain = [p for p in fitting if p.precision == prec and not p.checkpoint_blocks]
        if ckpt and plain and num_modules != "auto" and not _allows_larger_micro(plain[0], estimator, transport,
                                                                               budget, say):
            continue  # recomputing only pays for a larger micro-batch than the plain step's: none fits
        try:
            fitting.append(_fit(estimator, num_blocks, num_modules, budget, transport, bounds_for, ckpt, prec, say))
        except NoPlanFits as exc:
            failures.append(exc)
    if not fitting:
        raise min(failures, key=lambda exc: exc.needed_bytes)
    if len(fitting) == 1 and len(options) == 1:
        return fitting[0]
    if len(fitting) > 1:
        say(f"planning: pricing {len(fitting)} plans that fit with the time model")
    return _fastest(fitting, estimator, transport, speed, len(options))


def modelled_seconds(plan: Plan, estimator: SequentialEstimator, transport: bool,
                     speed: Callable[[str], MachineSpeed]) -> float:
    """The time model's seconds for one batch of ``plan`` (every module once), from the work the
    estimator counted beside the peaks (or counts now)."""
    micro = plan.micro_batch if plan.micro_batch < plan.batch_size else None
    estimates = estimator.modules(len(plan.boundaries) + 1, plan.boundaries, micro, precision=plan.precision,
                                  checkpoint_blocks=plan.checkpoint_blocks, transport=transport, work=True)
    return sum(speed(plan.precision).seconds(e.work) for e in estimates)


def _allows_larger_micro(plain: Plan, estimator: SequentialEstimator, transport: bool, budget: int | None,
                         say: Callable[[str], None]) -> bool:
    """Could checkpointing inside modules fit a larger micro-batch than ``plain`` (the same split and
    precision without it)? One estimate, at the next larger candidate: otherwise checkpointing would
    only add the recompute's time, and the time model would rank it behind ``plain``."""
    if budget is None or plain.micro_batch >= plain.batch_size:
        return False
    larger = ([plain.batch_size] + micro_batch_candidates(plain.batch_size))
    micro = larger[larger.index(plain.micro_batch) - 1]
    bounds = plain.boundaries
    say(f"planning:   {len(bounds) + 1} module(s), " + (f"micro-batches of {micro}" if micro < plain.batch_size
                                                         else f"batch {micro}") + ", checkpointing inside modules")
    estimates = estimator.modules(len(bounds) + 1, bounds, micro, precision=plain.precision, checkpoint_blocks=True,
                                  transport=transport, budget=budget)
    return max(e.peak.peak_bytes for e in estimates) <= budget


def _plain(plan: Plan, precision: str) -> bool:
    return plan.precision == precision and not plan.checkpoint_blocks and plan.micro_batch >= plan.batch_size


INEXACT_MARGIN = 0.9  # an inexact plan wins only if modelled at most 0.9x the fastest exact one


def _fit(estimator: SequentialEstimator, num_blocks: int, num_modules: int | str, budget: int | None, transport: bool,
         bounds_for: Callable[[int], list[int]], checkpoint_blocks: bool, precision: str,
         say: Callable[[str], None] = lambda line: None) -> Plan:
    """The split and micro-batch that fit, for one choice of step options."""
    batch = estimator.batch_shape[0]

    def estimate(bounds: list[int], micro: int, whole: bool = False) -> Plan:
        """The plan at ``micro``; unless ``whole``, its modules only up to the first over the budget."""
        say(f"planning:   {len(bounds) + 1} module(s), " + (f"micro-batches of {micro}" if micro < batch else f"batch {batch}"))
        estimates = estimator.modules(len(bounds) + 1, bounds, micro, precision=precision,
                                      checkpoint_blocks=checkpoint_blocks, transport=transport,
                                      budget=None if whole else budget)
        ranges = list(zip([0] + bounds, bounds + [num_blocks]))
        mods = [ModulePlan(k + 1, r, e.peak.peak_bytes) for k, (r, e) in enumerate(zip(ranges, estimates))]
        return Plan(bounds, mods, batch, micro, budget, checkpoint_blocks=checkpoint_blocks, precision=precision,
                    complete=len(mods) == len(bounds) + 1)

    if num_modules == "auto":
        found = _fewest_modules(estimate, bounds_for, num_blocks, batch, budget)
        if found is not None:
            return found
        num_modules = num_blocks  # not even one block per module fits at full batch: micro-batch below
    plan = estimate(bounds_for(int(num_modules)), batch)
    if budget is None or plan.peak_bytes <= budget:
        return plan
    return _fit_micro_batch(estimate, plan, batch, budget)


def _fastest(plans: list[Plan], estimator: SequentialEstimator, transport: bool,
             speed: Callable[[str], MachineSpeed] | None, weighed: int) -> Plan:
    """Price every fitting plan with the time model; keep the fastest (exact ones preferred within
    the margin) and say why."""
    if len(plans) == 1:  # nothing to weigh: say why
        best = plans[0]
        why = ("fits at full batch without checkpointing inside modules (which would only add time)"
               if _plain(best, best.precision) else f"the only one of {weighed} step options that fits the budget")
        best.notes.append(f"{best.describe()}: {why}")
        return best
    if speed is None:
        raise ValueError("weighing step options needs the device's speed (edgetrgl.planning.speed.machine_speed)")
    for plan in plans:
        plan.modelled_step_s = modelled_seconds(plan, estimator, transport, speed)
    exact = [p for p in plans if p.exact]
    best = min(plans, key=lambda p: p.modelled_step_s)
    if exact:
        best_exact = min(exact, key=lambda p: p.modelled_step_s)
        if best_exact.modelled_step_s * INEXACT_MARGIN <= best.modelled_step_s:
            best = best_exact
    record = [{"plan": p.describe(), "checkpoint_blocks": p.checkpoint_blocks, "precision": p.precision,
               "micro_batch": p.micro_batch, "num_modules": len(p.modules), "estimated_peak_bytes": p.peak_bytes,
               "modelled_step_s": round(p.modelled_step_s, 6)} for p in plans]
    others = [p for p in plans if p is not best]
    why = "; ".join(f"{p.describe()}: {p.modelled_step_s / best.modelled_step_s:.2f}x"
                    + (" but inexact, so not chosen" if p.modelled_step_s < best.modelled_step_s else "") for p in others)
    best.notes.append(f"{best.describe()}: the fastest plan that fits (modelled {1e3 * best.modelled_step_s:.0f} ms "
                      f"per batch; {why})")
    best.candidates = record
    return best


def _fewest_modules(estimate: Callable[[list[int], int], Plan], bounds_for: Callable[[int], list[int]],
                    num_blocks: int, batch: int, budget: int) -> Plan | None:
    """``--modules auto``: binary search on K with full estimates (the peak falls as K grows: one
    module is the whole network, one block per module is the floor; the cost model alone
    overestimates). None when even one block per module does not fit the full batch."""
    low, high, found = 1, num_blocks, None
    while low <= high:
        k = (low + high) // 2
        plan = estimate(bounds_for(k), batch)
        if plan.peak_bytes <= budget:
            found, high = plan, k - 1
        else:
            low = k + 1
    if found is not None:
        found.notes.append(f"--modules auto: {len(found.modules)} module(s) is the fewest that fit")
    return found


def micro_batch_candidates(batch: int) -> list[int]:
    """The micro-batches tried, largest first: the batch halved (rounded down) down to 1."""
    sizes, micro = [], batch
    while micro > 1:
        micro = max(1, micro // 2)
        sizes.append(micro)
    return sizes


def _fit_micro_batch(estimate: Callable[..., Plan], plan: Plan, batch: int, budget: int) -> Plan:
    """The largest micro-batch (of :func:`micro_batch_candidates`) whose split fits, or name the
    smallest budget that would.

    Bisection, not a scan: the peak falls as the micro-batch shrinks. The first guess comes from a
    cost model fitted to two estimates: a module's activations scale linearly in the micro-batch, its
    weights, gradients and optimizer state do not. The probes are the first two candidates (half and
    a quarter of the batch: two and four fake chunks, the cheapest estimates; an estimate at
    micro-batch m runs batch / m chunks). A guess that fits is confirmed by its larger neighbour not
    fitting, so the result is the scan's; a wrong guess falls back to plain bisection.
    """
    sizes = micro_batch_candidates(batch)
    known: dict[int, Plan] = {batch: plan}

    def at(index: int) -> Plan:
        micro = sizes[index]
        if micro not in known:
            known[micro] = estimate(plan.boundaries, micro)
        return known[micro]

    def fits(index: int) -> bool:
        return at(index).peak_bytes <= budget

    failing, fitting = -1, None  # the largest known-failing and the smallest known-fitting index
    if not sizes:  # a batch of 1: nothing smaller to try
        pass
    elif fits(0):
        fitting = 0
    elif len(sizes) > 1 and fits(1):
        failing, fitting = 0, 1
    else:
        failing = min(1, len(sizes) - 1)
        guess = _predicted_index(at(0), at(failing), sizes, budget) if failing else failing
        for index in (guess, guess - 1 if guess - 1 > failing else None, guess + 1 if guess + 1 < len(sizes) else None):
            if index is None or index <= failing or (fitting is not None and index >= fitting):
                continue
            if fits(index):
                fitting = index
            else:
                failing = index
            if fitting is not None and fitting == failing + 1:
                break
        if fitting is None and failing < len(sizes) - 1 and fits(len(sizes) - 1):
            fitting = len(sizes) - 1
        while fitting is not None and fitting - failing > 1:
            mid = (failing + fitting) // 2
            if fits(mid):
                fitting = mid
            else:
                failing = mid
    if fitting is None:
        smallest = known[sizes[-1]] if sizes else plan
        if not smallest.complete:  # the search stopped at the first module over the budget: the largest may follow
            smallest = estimate(plan.boundaries, smallest.micro_batch, whole=True)
        raise NoPlanFits(f"no plan fits the budget of {format_bytes(budget)} ({budget / 1e9:.3g} GB): even with "
                         f"micro-batches of 1 a module needs {format_bytes(smallest.peak_bytes)}; the smallest budget "
                         f"that would fit this split is {format_bytes(smallest.peak_bytes)} "
                         f"({smallest.peak_bytes / 1e9:.3g} GB)", smallest.peak_bytes)
    chosen = at(fitting)
    chosen.notes.append(f"micro-batches of {chosen.micro_batch} with gradient accumulation: batch {batch} does not fit")
    return chosen


def _predicted_index(larger: Plan, smaller: Plan, sizes: list[int], budget: int) -> int:
    """The first index of ``sizes`` predicted to fit, by a line through each module's peak at two
    micro-batches (both chunked: the full batch is not, and keeps one copy of the output where chunks
    keep two); len(sizes) - 1 when none is predicted to fit."""
    span = max(larger.micro_batch - smaller.micro_batch, 1)
    lines = [(b.estimated_peak_bytes, (a.estimated_peak_bytes - b.estimated_peak_bytes) / span)
             for a, b in zip(larger.modules, smaller.modules)]
    for index, micro in enumerate(sizes):
        if max(base + slope * (micro - smaller.micro_batch) for base, slope in lines) <= budget:
            return index
    return len(sizes) - 1


def _count_blocks(build_blocknet: Callable) -> list:
    return build_blocknet().blocks


def _builder_from_blocknet(build_blocknet: Callable, batch_shape, num_classes: int) -> BuildFn:
    from edgetrgl.modular import build_modular

    def build(k: int, bounds: list[int] | None) -> ModularNet:
        sample = torch.zeros(2, *batch_shape[1:])
        return build_modular(build_blocknet(), k, num_classes, sample, boundaries=bounds)

    return build
