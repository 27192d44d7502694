"""One run body for every way of running: one process, or one rank of a torchrun job.

    run(cfg, OneProcess(), ...)         # edgetrgl.train, resume, --auto-resume: train_in_process below
    run(cfg, TorchrunRanks(env), ...)   # every rank of a torchrun job (edgetrgl/distributed/run.py)

The body plans a fresh run, builds the network, fine-tunes it, (re)loads a checkpoint, trains, and
writes the results, in that order, once. What differs between one process and a rank sits in the
``ranks`` hooks (who plans, how the data is sharded, which modules are this rank's, how results meet
on rank 0): for one process they do nothing.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.console import Console

import edgetrgl.stop as stop
from edgetrgl.config import TrainConfig
from edgetrgl.data.validation import check_same_split, split_validation
from edgetrgl.errors import UserError
from edgetrgl.finetune import apply_finetune, plan_finetune
from edgetrgl.heads import HeadFactory
from edgetrgl.metrics import MetricsWriter, check_sinks, make_logger
from edgetrgl.models import BlockNet
from edgetrgl.modular import ModularNet
from edgetrgl.network import build_network
from edgetrgl.planning.run_plan import (RunPlan, as_planned, cache_location, check_budget, make_plan,
                                        warm_planner)
from edgetrgl.planning.solver import AUTO, solve_for
from edgetrgl.tables import candidates_table, plan_table
from edgetrgl.training.checkpoint import load_checkpoint
from edgetrgl.training.loading import load_data, with_head_factory
from edgetrgl.training.regimes import get_regime
from edgetrgl._faults import crash_point
from edgetrgl.training.results import RunResult, describe_position, over_ranks, print_result, spec_dict, versions
from edgetrgl.training.run_dir import agreed_changes, prepare_run_dir, save_weights, truncate_metrics, write_json
from edgetrgl.training.run_lock import hold_run_dir
from edgetrgl.training.trainer import Trainer

if TYPE_CHECKING:
    from edgetrgl.devices.process import ProcessFacts
    from edgetrgl.memory.planner import Plan


class Ranks:
    """What differs between the ways of running, as hooks of the one body: how many ranks, which is
    this one, who plans, how the data is sharded, how results meet. Each default is what a single
    process does (nothing to agree on); a torchrun rank's hooks
    (``edgetrgl.distributed.run.TorchrunRanks``) override them.
    """

    rank, world_size, is_main = 0, 1, True

    def shard(self, cfg: TrainConfig, train_set, spec) -> tuple[TrainConfig, Any, Any]:
        """What this rank trains on: ``(its config, its training set, the spec the plan sees)``."""
        return cfg, train_set, spec

    def plan(self, decide: Callable[[], tuple[RunPlan, ModularNet]]) -> tuple[RunPlan, ModularNet | None]:
        """Make the plan (``decide``) where it is made, and hand it to this rank (with its network, if built)."""
        return decide()

    def place(self, plan: RunPlan, device: str) -> RunPlan:
        """The plan on this rank's device (a resumed run may move) and with its cache folder."""
        return plan.on_device(device)

    def prepare_run_dir(self, run_dir: Path, overwrite: bool) -> None:
        prepare_run_dir(run_dir, overwrite)

    def prepare_net(self, net: ModularNet, cfg: TrainConfig) -> ModularNet:
        return net

    def fresh_extra(self, cfg: TrainConfig) -> dict[str, Any]:
        """Facts a fresh run records for good (carried through checkpoints into the summary)."""
        return {}

    def run_extra(self, layout: list[range]) -> dict[str, Any]:
        """Facts of this attempt: which ranks train which modules."""
        return {}

    def make_trainer(self, cfg: TrainConfig, plan: RunPlan, net: ModularNet, train_set, test_set,
                     writer: MetricsWriter, *, layout: list[range], saved_cfg: TrainConfig,
                     run_dir: Path | None) -> Trainer:
        return Trainer(cfg, plan, net, train_set, test_set, writer, run_dir=run_dir)

    def gather(self, trainer: Trainer, modules: list[dict], started: float, allocator: str | None) -> dict[str, Any]:
        """After training: bring every rank's records to the main one; returns what the summary adds."""
        return {}

    def finish(self, run_dir: Path | None, trainer: Trainer) -> None:
        """The results are written: the last step before every rank leaves."""


class OneProcess(Ranks):
    """A single-process run: one rank, the main one; every hook as :class:`Ranks` defines it."""


def run(cfg: TrainConfig, ranks: Ranks, *, data: tuple | None = None, model: BlockNet | None = None,
        head_factory: HeadFactory | None = None, run_dir: Path | None = None, overwrite: bool = False,
        state: dict | None = None, quiet: bool = False, console: Console | None = None) -> RunResult:
    """Plan (a fresh run) or reload (``state``, a checkpoint), train, and write the results: the run
    of one process, or of one rank (``ranks``). The caller holds the run folder's lock.

    Raises:
        UserError: bad configuration or data, a plan that fits nothing, a mismatching ``--init-from``
            (all before anything in ``run_dir`` is touched), or ``run_dir`` holds a run and not ``overwrite``.
    """
    console = console or Console(stderr=True)
    check_sinks(cfg.loggers)  # an unknown or uninstalled sink: one line before minutes of planning
    if cfg.regime != AUTO:
        get_regime(cfg.regime)  # an unknown regime: say so before loading any data
    train_set, test_set, spec = data or load_data(cfg)
    train_set, val_set, split = _validation_split(cfg, train_set, state, run_dir)
    model = with_head_factory(model, head_factory, cfg, spec)
    choice = None
    if cfg.regime == AUTO:  # a fresh run (a saved config holds the regime it resolved to)
        choice = solve_for(cfg, spec, model)
        cfg = choice.config
    regime = get_regime(cfg.regime)
    run_cfg, train_set, plan_spec = ranks.shard(cfg, train_set, spec)
    # every rank bounds its own allocator (process-wide); the planning rank measures its footprint
    process = _prepare_process(cfg) if cfg.device_profile else None
    if state is None:
        crash_point("plan")  # the tests send a SIGTERM here: the stop is honoured once the plan is made
        say = None if quiet or not ranks.is_main else (lambda line: console.print(line, style="dim", highlight=False))
        planning_started = time.perf_counter()
        plan, net = ranks.plan(lambda: plan_run(run_cfg, plan_spec, model, run_dir, world_size=ranks.world_size,
                                                process=process, progress=say,
                                                solved=choice.chosen.plan if choice else None))
        if choice is not None:
            plan.solver = choice.to_dict()
            plan.notes.insert(0, f"--regime auto: {choice.chosen.describe()}: {choice.why}")
        # the run's wall time starts after the plan: its cost is recorded beside it
        extra = {**ranks.fresh_extra(cfg), "validation": split,
                 "planning_s": round(time.perf_counter() - planning_started, 3)}
    else:
        plan, net, extra = RunPlan.from_dict(state["plan"], config=cfg, traits=regime.traits), None, dict(state.get("extra") or {})
    plan = ranks.place(plan, cfg.device)
    if net is None:  # a resumed run, or a rank that did not plan: the network the plan describes
        net = build_network(cfg.network, spec, model, num_modules=plan.num_modules, boundaries=plan.boundaries,
                            seed=cfg.seed, method=cfg.method, objective_options=cfg.objective_options)
    planned_cfg = as_planned(cfg, plan, regime.traits)
    init = None
    stop.check("planning" if state is None else "loading the checkpoint")  # nothing in run_dir touched yet
    if state is None:
        init = plan_finetune(planned_cfg, net, plan.model)  # a mismatching --init-from fails first
        if run_dir:
            ranks.prepare_run_dir(run_dir, overwrite)  # only now is anything in the folder touched
        if ranks.is_main and plan.solver and not quiet:
            console.print(candidates_table(plan.solver, cfg.budget))
        if ranks.is_main and plan.estimates and plan.estimates.get("modules") and not quiet:
            console.print(plan_table(plan.estimates))
    init_report = apply_finetune(net, planned_cfg, init)  # --init-from (fresh runs), --freeze-modules
    if init_report is not None and ranks.is_main and not quiet:
        console.print(init.describe())
    net = ranks.prepare_net(net, cfg)
    layout = plan.rank_ranges or [range(a, b) for a, b in extra.get("layout") or [[0, net.num_modules]]]
    if state is not None and run_dir is not None and ranks.is_main:
        truncate_metrics(run_dir / "metrics.jsonl", state["metrics_bytes"])  # drop records past the checkpoint
    writer = make_logger(cfg, run_dir, console, quiet, main=ranks.is_main)  # the sinks cfg.loggers asks for
    if run_dir and state is None and ranks.is_main:
        write_json(run_dir / "config.json", {"config": cfg.to_dict(), "plan": plan.to_dict(), "dataset": spec_dict(spec),
                                             "validation": split, **{k: extra[k] for k in ("torchrun_run_id",) if k in extra}})
    started = time.perf_counter()
    trainer = ranks.make_trainer(run_cfg, plan, net, train_set, test_set, writer, layout=layout, saved_cfg=cfg,
                                 run_dir=run_dir)
    trainer.extra = {**extra, **ranks.run_extra(layout)}
    trainer.val_set = val_set  # held out of train_set above; each module's head is scored on it too
    if state is not None:
        trainer.load_state_dict(state)
        started -= state.get("wall_time_s", 0.0)
    trainer.started = started
    what = "resuming" if state is not None else "edgetrgl:"
    method = f" {cfg.method}" + (" + transport" if trainer.objective["transport"] and cfg.method != "trgl" else "") \
        if regime.traits.modular else ""
    writer.log({"event": "resume" if state is not None else "start", "device": plan.device, **ranks.run_extra(layout),
                "modules": net.num_modules, "cache": plan.cache.mode, "position": trainer.position},
               echo=f"{what} {regime.name}{method}{over_ranks(ranks.world_size, cfg.data_parallel)} on {spec.name}, "
                    f"{plan.model} in {net.num_modules} module(s), device {plan.device}"
                    + (f", from {describe_position(trainer.position, regime)}" if state is not None else ""))
    try:
        modules = trainer.train()
        gathered = ranks.gather(trainer, modules, started, process.allocator if process else None)
    finally:
        writer.close()
        if plan.cache.scratch and plan.cache.folder:
            shutil.rmtree(plan.cache.folder, ignore_errors=True)
    for record, planned in zip(modules, (plan.estimates or {}).get("modules") or []):
        record["estimated_peak_bytes"] = planned["estimated_peak_bytes"]
    wall_time_s = time.perf_counter() - started
    extra = {**trainer.extra, "plan": plan.to_dict(), "cache": plan.cache.mode, "cache_reason": plan.cache.reason,
             **({"init_from": init_report} if init_report is not None else {}),
             "data_mode": trainer.data_mode, "device": plan.device, **gathered, "versions": versions(),
             "objective": trainer.objective,
             "phases_s": trainer.phases.report(wall_time_s)}  # where the wall time went
    result = RunResult(cfg, net, spec, modules, wall_time_s, run_dir, extra=extra)
    if ranks.is_main and run_dir:
        net.to("cpu")
        save_weights(run_dir / "model.pt", net, {"config": cfg.to_dict(), "plan": plan.to_dict(), "dataset": spec_dict(spec)})
        write_json(run_dir / "summary.json", result.summary())
        if ranks.world_size > 1:  # the tests kill rank 0 here: its results are on disk, the torchrun group not yet done
            crash_point("results")
    if ranks.is_main and not quiet:
        print_result(console, result)
    ranks.finish(run_dir, trainer)
    return result


def _validation_split(cfg: TrainConfig, train_set, state: dict | None, run_dir: Path | None) -> tuple:
    """``(train, val or None, record)``: the validation part held out of ``train_set``; a resumed
    run must get the split it started with (a run from before validation splits gets none).

    Raises:
        UserError: a bad ``--val-fraction``, or a resume whose split differs from the saved one.
    """
    saved = (state.get("extra") or {}).get("validation", {"fraction": 0.0, "sha256": None}) if state else None
    fraction = cfg.val_fraction if saved is None or saved["fraction"] else 0.0
    train, val, record = split_validation(train_set, fraction, cfg.seed)
    check_same_split(saved, record, f"the run in {run_dir}" if run_dir else "the run")
    return train, val, record


def plan_run(cfg: TrainConfig, spec, model: BlockNet | None = None, run_dir: Path | None = None, *,
             world_size: int = 1, process: ProcessFacts | None = None,
             progress: Callable[[str], None] | None = None, solved: Plan | None = None) -> tuple[RunPlan, ModularNet]:
    """:func:`~edgetrgl.planning.run_plan.make_plan` for ``cfg``'s regime, on the rank that plans:
    the regime's traits looked up, the machine measured once, under a whole-process budget this
    process's footprint measured (after the planner's first estimate, which stays in the process),
    and a temporary cache folder made where the plan asks for one.

    Args:
        process: what :func:`~edgetrgl.devices.process.prepare_process` resolved on this rank
            (prepared here when None and ``cfg.device_profile`` asks for it).
        progress: called with one line per planning step (None: silent).
        solved: ``--regime auto``'s chosen module plan for ``cfg`` (not planned again).
    """
    from edgetrgl.devices.machine import measure_machine  # lazy: `import edgetrgl` stays light

    traits = get_regime(cfg.regime).traits
    machine = measure_machine(cache_location(cfg, traits, run_dir)[0], cfg.device)
    if cfg.device_profile:
        from edgetrgl.devices.process import measure_footprint  # only with a profile: `import edgetrgl` stays light

        process = process or _prepare_process(cfg)
        if process.whole_process:  # refuse from the bound before the warm-up estimate, with the footprint so far
            check_budget(cfg, spec, model, traits=traits,
                         process=dataclasses.replace(process, footprint_bytes=machine.footprint_bytes))
            if progress:
                progress("planning: measuring the runtime's footprint after one small estimate")
        process = measure_footprint(process, warm=lambda: warm_planner(cfg, spec, model, traits=traits))
    plan, net = make_plan(cfg, spec, model, run_dir, machine=machine, traits=traits, world_size=world_size,
                          process=process, progress=progress, solved=solved)
    if plan.cache.scratch and plan.cache.folder is None:  # the plan makes no folder: a run without one gets it here
        plan = dataclasses.replace(plan, cache=dataclasses.replace(
            plan.cache, folder=tempfile.mkdtemp(prefix="edgetrgl-cache-")))
    return plan, net


def dry_run(cfg: TrainConfig, *, data: tuple | None = None, model: BlockNet | None = None,
            head_factory: HeadFactory | None = None, quiet: bool = False,
            console: Console | None = None) -> RunPlan:
    """Plan ``cfg`` as a fresh run would, print the plan (with ``--regime auto``, every way weighed)
    and stop: nothing is trained and nothing is written."""
    console = console or Console(stderr=True)
    train_set, test_set, spec = data or load_data(cfg)
    model = with_head_factory(model, head_factory, cfg, spec)
    choice = solve_for(cfg, spec, model) if cfg.regime == AUTO else None
    planned = choice.config if choice else cfg
    say = None if quiet else (lambda line: console.print(line, style="dim", highlight=False))
    plan, _ = plan_run(planned, spec, model, None, progress=say, solved=choice.chosen.plan if choice else None)
    if plan.cache.scratch and plan.cache.folder:
        shutil.rmtree(plan.cache.folder, ignore_errors=True)
    if choice is not None:
        plan.solver = choice.to_dict()
        plan.notes.insert(0, f"--regime auto: {choice.chosen.describe()}: {choice.why}")
    if not quiet:
        if plan.solver:
            console.print(candidates_table(plan.solver, cfg.budget))
        if plan.estimates and plan.estimates.get("modules"):
            console.print(plan_table(plan.estimates))
        console.print(f"plan: {plan.regime}, {plan.num_modules} module(s), cache {plan.cache.mode}, device {plan.device}")
        for note in plan.notes:
            console.print(f"  {note}")
    return plan



def runs_on_ranks(cfg: TrainConfig) -> bool:
    """Does ``cfg`` run one process per rank under torchrun (a multi-process regime, or data parallel)?

    Raises:
        UserError: data parallel asked of a regime that is itself multi-process.
    """
    if cfg.regime == AUTO:
        return False  # --regime auto weighs single-process regimes (with --data-parallel it refuses)
    regime = get_regime(cfg.regime)
    if cfg.data_parallel and regime.traits.multi_process:
        raise UserError(f"--data-parallel is for the single-process regimes, not {regime.name} "
                        f"(it spreads the modules over the ranks itself)")
    return regime.traits.multi_process or cfg.data_parallel


def train_in_process(cfg: TrainConfig, *, out: str | Path | None, overwrite: bool = False, **options) -> RunResult:
    """A fresh single-process run into ``out`` (None or ``""``: no run folder), under its lock.
    ``options``: ``data``, ``model``, ``head_factory``, ``quiet``, ``console``, as for :func:`run`."""
    with hold_run_dir(out):  # taken first: an --overwrite of a folder in use deletes nothing
        return run(cfg, OneProcess(), run_dir=Path(out) if out else None, overwrite=overwrite, **options)


def resume_in_process(run_dir: str | Path, *, changes: dict[str, Any] | None = None, **options) -> RunResult:
    """Continue the single-process run in ``run_dir`` from its checkpoint, under its lock.

    Raises:
        UserError: a finished run, no or a corrupt checkpoint, or ``changes`` contradicting the run.
    """
    run_dir = Path(run_dir)
    with hold_run_dir(run_dir, create=False):  # one writer: refused while another process trains it
        if (run_dir / "summary.json").exists():
            raise UserError(f"the run in {run_dir} has already finished (its results are in summary.json)")
        state = load_checkpoint(run_dir)
        saved = TrainConfig.from_dict(state["config"])
        changed = agreed_changes(saved, changes or {}, "--resume")
        cfg = saved.replace(**{k: v for k, v in changed.items() if k != "out"}, out=str(run_dir))
        return run(cfg, OneProcess(), run_dir=run_dir, state=state, **options)


__all__ = ["OneProcess", "Ranks", "as_planned", "plan_run", "resume_in_process", "run", "runs_on_ranks", "train_in_process"]


def _prepare_process(cfg: TrainConfig) -> ProcessFacts:
    """``--device-profile``: the profile resolved and the allocator bounded, on every rank."""
    from edgetrgl.devices.process import prepare_process  # only with a profile: `import edgetrgl` stays light

    return prepare_process(cfg.device_profile, cfg.budget)
