"""``make_plan``: every decision a run needs, made once from the config, the data and the machine.

The plan resolves the device and its memory kind, the budget (one meaning: see ``budget.py``), the
modules (K, boundaries, micro-batch: the planner's fake-tensor estimates when a budget, ``--modules
auto`` or ``--split balanced`` asks for them), the cache (host / disk / none, dtype, views, folder)
and where frozen modules go. The trainer and the regimes read it; nothing downstream re-decides.
``config.json`` and ``summary.json`` record the user's request and this plan, with its reasons.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from edgetrgl.config import TrainConfig, format_bytes
from edgetrgl.errors import UserError
from edgetrgl.memory.estimate import estimate_parallel, estimate_sequential, optimizer_of
from edgetrgl.memory.planner import NoPlanFits, Plan, plan_modules
from edgetrgl.models import BlockNet
from edgetrgl.modular import ModularNet, split_blocks
from edgetrgl.network import build_blocknet, build_network, input_shape
from edgetrgl.objectives import uses_transport
from edgetrgl.planning.budget import Budget
from edgetrgl.planning.bound import lower_bound, state_copies
from edgetrgl.planning.layout import rank_layout
from edgetrgl.precision import autocast_for
from edgetrgl.cache.placement import CachePlan, output_elements, plan_cache
from edgetrgl.cache.prefetch import prefetch_depth
from edgetrgl.planning.device import memory_kind, resolve_device
from edgetrgl.planning.speed import machine_speed
from edgetrgl.planning.traits import RegimeTraits

if TYPE_CHECKING:  # devices/ is imported only by a run that has a profile: `import edgetrgl` stays light
    from edgetrgl.devices.machine import MachineFacts
    from edgetrgl.devices.process import ProcessFacts

Progress = Callable[[str], None]  # one console line per planning step, so nobody waits in silence


@dataclass
class RunPlan:
    """What a run does, resolved. Built by :func:`make_plan`; saved in checkpoints and summaries."""

    regime: str
    model: str  # the registry name, or the class name of your own network
    device: str
    memory_kind: str
    budget: int | None
    num_modules: int
    boundaries: list[int] | None
    micro_batch: int | None
    cache: CachePlan
    offload: str  # where frozen modules go: host, disk, or none (they stay: the prefix is recomputed)
    estimates: dict[str, Any] | None = None  # the module planner's per-module peaks, when it ran
    notes: list[str] = field(default_factory=list)  # why: one line per decision that was not a plain default
    process: dict[str, Any] | None = None  # with a shared-memory device profile: the whole-process budget and its parts
    checkpoint_blocks: bool = False  # the step recomputes each block's activations in backward
    precision: str = "fp32"  # the step's autocast (resolved: never "auto")
    layout: list[list[int]] | None = None  # multi-process regimes: [first, stop) of the modules of each rank
    solver: dict[str, Any] | None = None  # --regime auto: every way to fit that was weighed, and why this one
    transport: bool = True  # the local loss has the transport term (the trainer reads it; nothing re-decides)

    @property
    def rank_ranges(self) -> list[range] | None:
        return [range(a, b) for a, b in self.layout] if self.layout else None

    @property
    def budget_policy(self) -> Budget:
        return Budget(self.budget, self.memory_kind)  # type: ignore[arg-type]

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["cache"] = self.cache.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], config: TrainConfig | None = None,
                  traits: RegimeTraits | None = None) -> "RunPlan":
        """Read a saved plan; ``config`` (and the regime's ``traits``) fill the step's options and the
        transport term of a plan saved before they were part of it (they were read from the config then)."""
        values = dict(values)
        values["cache"] = CachePlan.from_dict(values["cache"])
        if config is not None and "checkpoint_blocks" not in values:
            values.update(checkpoint_blocks=config.checkpoint_blocks is True,
                          precision="fp32" if config.precision == "auto" else config.precision)
        if config is not None and traits is not None and "transport" not in values:
            values["transport"] = plan_transport(config, traits)
        return cls(**values)

    def on_device(self, device: str) -> "RunPlan":
        """The same plan on another device (a resumed run may move); memory kind follows the device."""
        dev = resolve_device(device)
        values = self.to_dict()
        values.update(device=str(dev), memory_kind=memory_kind(dev))
        return RunPlan.from_dict(values)


def make_plan(cfg: TrainConfig, spec, model: BlockNet | None = None, run_dir: Path | None = None, *,
              machine: MachineFacts, traits: RegimeTraits, world_size: int = 1,
              process: ProcessFacts | None = None, progress: Progress | None = None,
              solved: Plan | None = None) -> tuple[RunPlan, ModularNet]:
    """Plan the run and build its network (weights seeded by ``cfg.seed``).

    A function of its arguments: it measures nothing, makes no folder and imports no training code.
    What it needs about the machine, the regime and the process comes in as data, so the same
    arguments give the same plan.

    Args:
        cfg: the user's configuration (not modified); ``cfg.regime`` names the regime.
        spec: the data's DataSpec.
        model: your own BlockNet, or None for ``cfg.model``.
        run_dir: the run folder, or None (then a disk cache gets a temporary folder that the caller
            makes: the plan says ``cache.scratch`` with no folder).
        machine: this machine, measured once by the caller
            (:func:`edgetrgl.devices.machine.measure_machine`).
        traits: the regime's traits (``get_regime(cfg.regime).traits``).
        world_size: the ranks a multi-process regime spreads its modules over (the plan's layout).
        process: with ``--device-profile``, what :func:`edgetrgl.devices.process.prepare_process` resolved
            and :func:`~edgetrgl.devices.process.measure_footprint` measured.
        progress: called with one line per planning step (None: silent).
        solved: the module plan ``--regime auto``'s solver chose for ``cfg`` (its resolved
            configuration): taken as it is, not planned again.

    Returns:
        ``(plan, net)``.

    Raises:
        UserError: an unknown regime, no CUDA for ``--device cuda``, a plan that fits nothing (the
            message names the smallest budget that would fit; a budget under the lower bound is refused
            before any search), or data that does not fit the model.
    """
    say = progress or (lambda line: None)
    device = resolve_device(cfg.device, cuda_available=machine.cuda_available)
    if cfg.precision != "auto":
        autocast_for(cfg.precision, device)  # an fp16 this torch cannot autocast on the CPU: say so before training
    kind = memory_kind(device, integrated=machine.device_integrated)
    notes: list[str] = []
    process = _process_budget(cfg, spec, model, notes, facts=process) if cfg.device_profile else None
    if process is not None and process["scope"] == "device":  # a dedicated GPU's profile: its memory is the budget
        cfg, process = cfg.replace(budget=process["budget_bytes"]), None
    elif process is not None:
        kind = "shared"
        cfg = cfg.replace(budget=process["tensor_budget_bytes"], offload=process["offload"])
    budget = Budget(cfg.budget, kind)
    if cfg.budget is not None:
        fixed = process["footprint_bytes"] + process["weights_in_ram_bytes"] if process is not None else 0
        refuse_below_lower_bound(cfg, spec, model, traits, fixed=fixed, meaning=process["meaning"] if process else None)
        say(f"planning: {cfg.regime} {model.name if model is not None else cfg.model} under "
            f"{format_bytes(cfg.budget)} for tensors: estimating modules on fake tensors")
    try:
        modules = (_solved_modules(solved, cfg, traits, notes) if solved is not None
                   else _plan_modules(cfg, traits, spec, model, notes, device, machine, say))
    except NoPlanFits as exc:
        if process is None:
            raise
        fixed = process["footprint_bytes"] + process["weights_in_ram_bytes"]
        need = fixed + exc.needed_bytes
        raise UserError(f"no plan fits {process['meaning']}: the runtime and the weights kept in RAM take "
                        f"{format_bytes(fixed)}, and one module needs {format_bytes(exc.needed_bytes)} even with "
                        f"micro-batches of 1; the smallest budget that would fit is {format_bytes(need)} "
                        f"({need / 1e9:.3g} GB)") from None
    num_modules, boundaries, micro, estimates = modules.num_modules, modules.boundaries, modules.micro_batch, modules.estimates
    net = build_network(cfg.network, spec, model, num_modules=num_modules, boundaries=boundaries, seed=cfg.seed,
                        method=cfg.method, objective_options=cfg.objective_options)
    num_modules = net.num_modules
    folder, scratch = cache_location(cfg, traits, run_dir)
    module_peak = estimates["estimated_peak_bytes"] if estimates else 0
    ram_limit = None
    if budget.limited and kind == "shared":
        # one DRAM: the host cache lives beside the module being trained, inside the same budget
        ram_limit = max(0, budget.bytes - module_peak)
    cache = plan_cache(requested=cfg.cache, dtype=cfg.cache_dtype, views=cfg.cache_views if cfg.augment else 1,
                       keep=cfg.keep_cache, needs_cache=traits.needs_cache, net=net,
                       input_shape=input_shape(spec), num_train=spec.num_train, num_test=spec.num_test,
                       folder=folder, scratch=scratch, ram_limit=ram_limit, free_ram=machine.free_ram_bytes,
                       free_disk=machine.free_disk_bytes)
    if (cfg.cache == "auto" or cfg.cache_dtype == "auto") and traits.needs_cache:
        notes.append(f"cache {cache.mode}: {cache.reason}")
    offload = cfg.offload if cache.mode != "none" else "none"
    if not traits.needs_cache:
        offload = "none"
    if process is not None:
        elements = output_elements(net, input_shape(spec)) if cache.mode != "none" else []  # probed once
        step_peak = _with_prefetched_inputs(elements, cache, estimates, cfg.batch_size, module_peak, device)
        process["estimated_peak_bytes"] = (process["footprint_bytes"] + process["weights_in_ram_bytes"]
                                           + _tensors_and_host_cache(elements, cache, step_peak))
        notes.append(f"whole process: {process['meaning']}; estimated peak {format_bytes(process['estimated_peak_bytes'])}")
        need = process["estimated_peak_bytes"]
        if need > process["budget_bytes"] and cfg.cache == "host":  # auto would have put it on disk
            raise UserError(f"--cache {cfg.cache} keeps {format_bytes(cache.bytes_needed)} in RAM beside the module "
                            f"being trained: the whole process would need about {format_bytes(need)} "
                            f"({need / 1e9:.3g} GB), over the budget ({process['meaning']}): use --cache disk or auto, or a "
                            f"budget of at least {format_bytes(need)}")
    if budget.limited:
        notes.append(f"budget: {budget.describe()}")
    layout = None
    if traits.multi_process:
        say(f"planning: spreading {num_modules} module(s) over {world_size} rank(s)")
        layout, estimates = _rank_layout(cfg, spec, model, modules, world_size, net.num_modules, boundaries, traits)
    name = model.name if model is not None else cfg.model
    plan = RunPlan(regime=cfg.regime, model=name, device=str(device), memory_kind=kind, budget=cfg.budget,
                   num_modules=num_modules, boundaries=boundaries, micro_batch=micro, cache=cache, offload=offload,
                   estimates=estimates, notes=notes, process=process, checkpoint_blocks=modules.checkpoint_blocks,
                   precision=modules.precision, layout=layout, transport=plan_transport(cfg, traits))
    if cfg.budget is not None:
        say(f"planning: done: {num_modules} module(s)" + (f", micro-batches of {micro}" if micro else "")
            + (", checkpointing inside modules" if plan.checkpoint_blocks else "") + f", cache {cache.mode}")
    return plan, net


def plan_transport(cfg: TrainConfig, traits: RegimeTraits) -> bool:
    """Whether the local loss has the transport term: the objective (and ``--transport``) asks for it
    and the regime has one (e2e never does). Decided here once; the trainer reads ``plan.transport``."""
    return uses_transport(cfg.method, cfg.transport) and traits.transport


def requested_split(cfg: TrainConfig, traits: RegimeTraits) -> tuple[int | str, list[int] | None]:
    """``(K, boundaries)`` the user's config asks of this regime: end to end trains one module (its
    config's split is kept only for fine-tuning: see :func:`as_planned`)."""
    if not traits.modular:
        return 1, None
    return cfg.modules, cfg.boundaries


def as_planned(cfg: TrainConfig, plan: RunPlan, traits: RegimeTraits) -> TrainConfig:
    """``cfg`` with the plan's modules, for fine-tuning (e2e keeps the requested split: its frozen
    prefix is the first N modules of that split)."""
    if not traits.modular:
        return cfg
    return cfg.replace(modules=plan.num_modules, boundaries=plan.boundaries)


def refuse_below_lower_bound(cfg: TrainConfig, spec, model: BlockNet | None, traits: RegimeTraits, *, fixed: int = 0,
                             meaning: str | None = None) -> None:
    """Refuse a budget under :func:`~edgetrgl.planning.bound.lower_bound` before any search.

    Args:
        fixed: bytes outside the tensor budget that the whole process also holds (runtime footprint and
            weights kept in RAM; 0 without a whole-process budget).
        meaning: what the budget covers, for the message (None: ``cfg.budget``, bytes for tensors).

    Raises:
        UserError: the budget is below the bound; the message gives the smallest budget worth trying.
    """
    whole = not traits.plans_budget and not traits.multi_process  # one step holds the whole network
    blocknet = build_blocknet(cfg.network, spec, model)
    k, bounds = requested_split(cfg, traits)
    if bounds is None and isinstance(k, int) and cfg.split == "equal":  # the split the planner will check
        bounds = [s for s, _ in split_blocks(len(blocknet.blocks), k)][1:]
    bound = lower_bound(blocknet, input_shape(spec), cfg.micro_batch or cfg.batch_size, boundaries=bounds,
                        whole_network=whole, half_precision=cfg.precision != "fp32",
                        copies=state_copies(cfg.optimizer, cfg.momentum))
    if bound.bytes <= cfg.budget:
        return
    need = fixed + bound.bytes
    over = (f"the runtime and the weights kept in RAM take {format_bytes(fixed)}, and " if fixed else "")
    raise UserError(f"no plan fits {meaning or 'the budget of ' + format_bytes(cfg.budget)}: {over}{bound.what} needs "
                    f"at least {format_bytes(bound.bytes)}; the smallest budget that could fit is at least "
                    f"{format_bytes(need)} ({need / 1e9:.3g} GB)"
                    + (f": use --regime sequential, which trains one module at a time" if whole else ""))


def _process_budget(cfg: TrainConfig, spec, model: BlockNet | None, notes: list[str],
                    facts: ProcessFacts | None) -> dict[str, Any]:
    """``--device-profile``: what the whole process may use, and the part of it left for tensors.

    On a shared-memory board the kernel's OOM killer ends the process, so the budget covers all of
    it: the runtime's own footprint (measured by the caller after imports, data and the planner's
    first estimate: anonymous memory, as the kernel's cgroup counts it), the network's weights kept
    in RAM (frozen modules), the tensors of the module being trained and the host cache. When the
    weights do not leave room, the frozen modules go to disk.

    Raises:
        ValueError: ``facts`` missing, or without the footprint of a whole-process budget (a
            programming error: see :mod:`edgetrgl.devices.process`).
    """
    if facts is None:
        raise ValueError("--device-profile needs the process's facts: edgetrgl.devices.process.prepare_process")
    resolved = facts.budget
    notes.extend(resolved.warnings)
    process: dict[str, Any] = {"profile": resolved.profile, "scope": resolved.scope,
                               "budget_bytes": resolved.budget_bytes, "source": resolved.source,
                               "meaning": resolved.meaning}
    if resolved.scope != "process":
        return process
    if facts.footprint_bytes is None:
        raise ValueError("a whole-process budget needs the footprint: edgetrgl.devices.process.measure_footprint")
    allocator = facts.allocator  # bounded in every rank before planning (devices/process.py)
    if allocator:
        notes.append(allocator)
    footprint = facts.footprint_bytes
    blocknet = build_blocknet(cfg.network, spec, model)
    parts = [blocknet.stem, *blocknet.blocks]
    weights = sum(t.numel() * t.element_size() for m in parts for t in [*m.parameters(), *m.buffers()])
    offload = cfg.offload
    left = resolved.budget_bytes - footprint - (weights if offload == "host" else 0)
    if offload == "host" and left < weights:  # RAM is short: frozen modules wait on disk instead
        offload, left = "disk", resolved.budget_bytes - footprint
        notes.append("frozen modules offloaded to disk: their weights do not fit beside the module being trained")
    if left <= 0:
        raise UserError(f"{resolved.meaning} is below what the runtime alone takes ({format_bytes(footprint)} measured "
                        f"after imports and data): the smallest budget to try is "
                        f"{format_bytes(footprint + 2 * weights)} ({(footprint + 2 * weights) / 1e9:.3g} GB)")
    process.update(footprint_bytes=footprint, weights_in_ram_bytes=weights if offload == "host" else 0,
                   tensor_budget_bytes=left, offload=offload, allocator=allocator)
    return process


WARM_BLOCKS = 2  # blocks of the network that warm_planner estimates


def warm_planner(cfg: TrainConfig, spec, model: BlockNet | None = None, *, traits: RegimeTraits) -> None:
    """One fake-tensor estimate of a 2-sample step, so the footprint measured next includes the planner.

    The first estimate imports torch._dynamo, sympy and ~900 other modules and fills dispatch
    caches: about 80 MiB of anonymous memory (torch 2.14, x86) that stays for the whole run. Measured
    before it, the footprint missed it (the default rpi4-2gb run: 294 MiB measured, 377 MiB once
    the plan was made). Fake tensors on a fresh copy of the network: the real weights are untouched.
    The copy keeps its first ``WARM_BLOCKS`` blocks (any prefix is a valid network): the imports and
    caches are the same, and ResNet-110's 54 blocks took 18 s of a 31 s refusal on x86, about half an
    hour under emulation on a Cortex-A72.
    """
    def net():
        prefix = build_blocknet(cfg.network, spec, model)
        prefix.blocks = prefix.blocks[:WARM_BLOCKS]
        return build_network(cfg.network, spec, prefix, num_modules=1, method=cfg.method,
                             objective_options=cfg.objective_options)

    estimate_parallel(net, (2, *input_shape(spec)), spec.num_classes, plan_transport(cfg, traits),
                      precision="fp32" if cfg.precision == "auto" else cfg.precision,
                      checkpoint_blocks=cfg.checkpoint_blocks is True)


def _tensors_and_host_cache(elements: list[int], cache: CachePlan, module_peak: int) -> int:
    """Peak of the module's tensors and the host cache together: the larger of training (the
    largest cache beside the largest module) and a cache write pass, where module k's outputs are
    written while module k-1's, their source, are still held: both caches at once (measured: the
    default setting with ``--cache host`` peaked 5% over an estimate that counted one cache).
    ``elements``: per-sample output sizes of modules 1..K-1 (``output_elements``)."""
    if cache.mode != "host" or not elements:
        return module_peak
    sizes = [cache.bytes_needed * e // max(elements) for e in elements]  # bytes_needed is the largest
    write_pass = max(a + b for a, b in zip([0, *sizes], sizes))
    return max(module_peak + cache.bytes_needed, write_pass)


def _with_prefetched_inputs(elements: list[int], cache: CachePlan, estimates: dict | None, batch_size: int,
                            module_peak: int, device: torch.device) -> int:
    """The largest module's peak with its cached inputs in flight: the step's estimate counts one input
    batch, the prefetcher holds up to its depth more in its queue and one being gathered (float32;
    none for a host cache on the CPU, served inline).
    Measured: ResNet-110, 1,024 images, module 2 rose 384 MiB against a planned 320 MiB, three of its
    16 MiB input batches (48 MiB) beyond the one the step holds."""
    per_module = (estimates or {}).get("modules")
    if cache.mode == "none" or not elements or not per_module:
        return module_peak
    depth = prefetch_depth(device, cache.mode)  # 0: served inline, nothing waits beside the step's batch
    in_flight = [(depth + 1 if depth else 0) * batch_size * e * 4 for e in [0, *elements]]  # module 1 reads the data
    return max(m["estimated_peak_bytes"] + extra for m, extra in zip(per_module, in_flight))


@dataclass
class _Modules:
    """What ``_plan_modules`` resolved: the split, the micro-batch and the step's options."""

    num_modules: int
    boundaries: list[int] | None
    micro_batch: int | None
    estimates: dict | None
    checkpoint_blocks: bool
    precision: str


def _solved_modules(solved: Plan, cfg: TrainConfig, traits: RegimeTraits, notes: list[str]) -> _Modules:
    """The solver's plan for its resolved ``cfg``: its estimates were made at the full batch, with
    the micro-batch the step will use."""
    micro = solved.micro_batch if solved.micro_batch < solved.batch_size else None
    notes.extend(solved.notes)
    if not traits.modular:
        return _Modules(1, None, micro, {"estimated_peak_bytes": solved.peak_bytes, "modules": None},
                        solved.checkpoint_blocks, solved.precision)
    return _Modules(len(solved.modules), solved.boundaries or None, micro, solved.to_dict(), solved.checkpoint_blocks,
                    solved.precision)


def _plan_modules(cfg: TrainConfig, traits: RegimeTraits, spec, model: BlockNet | None, notes: list[str],
                  device: torch.device, machine: MachineFacts, say: Progress) -> _Modules:
    """K, boundaries, micro-batch, the step's options (checkpointing inside modules, precision) and
    the estimates behind them.

    Regimes that plan (sequential, multilap) get the memory planner whenever a budget,
    ``--modules auto``, ``--split balanced`` or ``--precision auto`` asks for it: it keeps the fastest
    plan that fits. The others cannot shrink below one step of the whole network, so a budget is
    only checked for them (with checkpointing inside the network if ``auto`` and that is what fits).
    An ``auto`` option the planner did not weigh resolves to off / fp32.
    """
    k, bounds = requested_split(cfg, traits)
    if cfg.modules == "auto" and not traits.plans_budget:
        raise UserError(f"--modules auto is for regimes that plan modules against a budget, not {cfg.regime}")
    # checkpointing only ever saves memory at a cost in time: weigh it when there is a budget to meet
    ckpt = cfg.checkpoint_blocks if cfg.budget is not None else cfg.checkpoint_blocks is True
    plain_ckpt, plain_precision = ckpt is True, "fp32" if cfg.precision == "auto" else cfg.precision
    wants_plan = (cfg.budget is not None or cfg.split == "balanced" or cfg.modules == "auto"
                  or (cfg.precision == "auto" and traits.plans_budget))
    if not wants_plan:
        return _Modules(k, bounds, cfg.micro_batch, None, plain_ckpt, plain_precision)
    batch_shape = (cfg.micro_batch or cfg.batch_size, *input_shape(spec))
    transport = plan_transport(cfg, traits)
    optimizer = optimizer_of(cfg)

    def build(num: int, b: list[int] | None) -> ModularNet:
        return build_network(cfg.network, spec, build_blocknet(cfg.network, spec, model), num_modules=num, boundaries=b,
                             method=cfg.method, objective_options=cfg.objective_options)

    num_blocks = len(build_blocknet(cfg.network, spec, model).blocks)
    if not traits.plans_budget:
        step_options = dict(precision=plain_precision, checkpoint_blocks=plain_ckpt)
        if traits.modular and cfg.split == "balanced" and bounds is None:  # balanced, not shrunk to a budget
            bounds = plan_modules(build, num_blocks, batch_shape, spec.num_classes, num_modules=k, split="balanced",
                                  transport=transport, make_optimizer=optimizer, **step_options).boundaries or None
        if traits.multi_process:  # the modules are spread over the ranks: each rank is checked (_rank_layout)
            return _Modules(k, bounds, cfg.micro_batch, None, plain_ckpt, plain_precision)
        peak = estimate_parallel(lambda: build(k, bounds), batch_shape, spec.num_classes, transport,
                                 make_optimizer=optimizer, **step_options).peak_bytes
        if cfg.budget is not None and peak > cfg.budget and ckpt == "auto":
            with_ckpt = estimate_parallel(lambda: build(k, bounds), batch_shape, spec.num_classes, transport,
                                          make_optimizer=optimizer, precision=plain_precision,
                                          checkpoint_blocks=True).peak_bytes
            if with_ckpt <= cfg.budget:
                notes.append(f"checkpointing inside modules: one step needs {format_bytes(with_ckpt)} with it, "
                             f"{format_bytes(peak)} without")
                peak, plain_ckpt = with_ckpt, True
        if cfg.budget is not None and peak > cfg.budget and not traits.modular and cfg.micro_batch is None:
            # e2e is one module: the planner at K = 1 finds the largest micro-batch that fits, as a user
            # accumulating gradients would (with checkpointing too where ``auto`` lets it weigh that)
            try:
                fitted = plan_modules(build, num_blocks, batch_shape, spec.num_classes, num_modules=1,
                                      budget=cfg.budget, transport=transport, precision=plain_precision,
                                      checkpoint_blocks=ckpt, make_optimizer=optimizer,
                                      speed=lambda precision: machine_speed(device, precision,
                                                                            gpu_name=machine.device_name,
                                                                            native_bf16=machine.cpu_native_bf16),
                                      progress=say)
            except NoPlanFits:
                pass
            else:
                notes.extend(fitted.notes)
                return _Modules(1, None, fitted.micro_batch, {"estimated_peak_bytes": fitted.peak_bytes, "modules": None},
                                fitted.checkpoint_blocks, fitted.precision)
        if cfg.budget is not None and peak > cfg.budget:
            raise UserError(f"the {cfg.regime} regime needs about {format_bytes(peak)} ({peak / 1e9:.3g} GB) for one "
                            f"step, over the budget of {format_bytes(cfg.budget)}: use --regime sequential")
        return _Modules(k, bounds, cfg.micro_batch, {"estimated_peak_bytes": peak, "modules": None}, plain_ckpt,
                        plain_precision)
    plan: Plan = plan_modules(build, num_blocks, batch_shape, spec.num_classes, num_modules=cfg.modules,
                              split=cfg.split, budget=cfg.budget, transport=transport, boundaries=cfg.boundaries,
                              precision=cfg.precision, checkpoint_blocks=ckpt, make_optimizer=optimizer,
                              speed=lambda precision: machine_speed(device, precision, gpu_name=machine.device_name,
                                                                    native_bf16=machine.cpu_native_bf16),
                              progress=say)
    notes.extend(plan.notes)
    micro = plan.micro_batch if plan.micro_batch < batch_shape[0] else cfg.micro_batch
    return _Modules(len(plan.modules), plan.boundaries or None, micro, plan.to_dict(), plan.checkpoint_blocks,
                    plan.precision)


def _rank_layout(cfg: TrainConfig, spec, model: BlockNet | None, modules: _Modules, world_size: int,
                 num_modules: int, boundaries: list[int] | None,
                 traits: RegimeTraits) -> tuple[list[list[int]], dict | None]:
    """Which modules each rank trains, and (with a budget) each rank checked against it.

    The weights of ``--pipeline-split memory`` and the check are the planner's fake-tensor peaks of
    training each module alone, with the plan's step options; a rank holds all of its modules (their
    weights, gradients and optimizer state stay resident), so its need is counted as the sum of
    theirs (a safe side: only one module's activations are alive at a time).

    Raises:
        UserError: more ranks than modules, or a rank whose modules do not fit the budget.
    """
    rank_layout(num_modules, world_size)  # more ranks than modules: say so before estimating anything
    peaks = None
    if cfg.pipeline_split == "memory" or cfg.budget is not None:
        def build() -> ModularNet:
            return build_network(cfg.network, spec, model, num_modules=num_modules, boundaries=boundaries,
                                 method=cfg.method, objective_options=cfg.objective_options)

        batch_shape = (modules.micro_batch or cfg.batch_size, *input_shape(spec))
        peaks = [p.peak_bytes for p in estimate_sequential(build, batch_shape, spec.num_classes, plan_transport(cfg, traits),
                                                           make_optimizer=optimizer_of(cfg), precision=modules.precision,
                                                           checkpoint_blocks=modules.checkpoint_blocks)]
    ranks = rank_layout(num_modules, world_size, peaks if cfg.pipeline_split == "memory" else None)
    if peaks is None:
        return [[r.start, r.stop] for r in ranks], modules.estimates
    needs = [sum(peaks[k] for k in r) for r in ranks]
    for rank, (r, need) in enumerate(zip(ranks, needs)):
        if cfg.budget is not None and need > cfg.budget:
            raise UserError(f"pipeline rank {rank} trains module(s) {r.start + 1}-{r.stop} and needs about "
                            f"{format_bytes(need)} ({need / 1e9:.3g} GB), over the budget of {format_bytes(cfg.budget)}: "
                            f"use more ranks (--nproc-per-node), more --modules, or --pipeline-split memory")
    estimates = {"estimated_peak_bytes": max(needs), "modules": None, "module_peaks": peaks, "rank_peaks": needs}
    return [[r.start, r.stop] for r in ranks], estimates


def cache_location(cfg: TrainConfig, traits: RegimeTraits, run_dir: Path | None) -> tuple[Path | None, bool]:
    """Where a disk cache goes: ``(--cache-dir, False)``, else ``(the run folder's cache/, False)``,
    else ``(None, True)``: a temporary folder, made by the caller once the plan is made."""
    if not traits.needs_cache:
        return None, False
    if cfg.cache_dir:
        return Path(cfg.cache_dir), False
    if run_dir is not None:
        return Path(run_dir) / "cache", False
    return None, True


def check_budget(cfg: TrainConfig, spec, model: BlockNet | None, *, traits: RegimeTraits,
                 process: ProcessFacts | None = None) -> None:
    """Refuse an infeasible budget from the lower bound alone, before anything is estimated (with a
    device profile, ``process`` may carry a footprint measured early: smaller than the later one, so
    the bound stays a lower bound). ``make_plan`` checks the same bound itself.

    Raises:
        UserError: the budget is under the bound (the message gives the smallest budget worth trying).
    """
    if cfg.device_profile and process is not None and process.footprint_bytes is not None:
        facts = _process_budget(cfg, spec, model, [], facts=process)
        if facts["scope"] == "device":
            refuse_below_lower_bound(cfg.replace(budget=facts["budget_bytes"]), spec, model, traits)
        else:
            refuse_below_lower_bound(cfg.replace(budget=facts["tensor_budget_bytes"]), spec, model, traits,
                                     fixed=facts["footprint_bytes"] + facts["weights_in_ram_bytes"],
                                     meaning=facts["meaning"])
    elif cfg.budget is not None and not cfg.device_profile:
        refuse_below_lower_bound(cfg, spec, model, traits)
