"""``edgetrgl train`` under torchrun: one process per rank, one run folder for all of them.

Rank 0 holds the run folder's write lock (``run_lock.py``) for the whole group, and writes
``config.json``, ``metrics.jsonl``, ``model.pt`` and ``summary.json``; the other ranks write only
their checkpoint parts, and only after rank 0 has taken the lock (they wait for its decision), so
one lock guards the folder (which all ranks must share, e.g. NFS across nodes). Rank 0 also makes
the run plan and hands it to every rank. When torchrun restarts the workers (``--max-restarts``),
they resume from the last complete checkpoint of the same torchrun run by themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist
from rich.console import Console

from edgetrgl.config import TrainConfig
from edgetrgl.distributed.checkpoint import load_distributed, prune, read_commit, remove_all
from edgetrgl.distributed.data_parallel import average_gradients, convert_sync_batchnorm, per_rank_batch, shard_dataset
from edgetrgl.distributed.env import DistEnv, agree, init_from_env, restart_count, shutdown
from edgetrgl.distributed.layout import module_weights, rank_layout
from edgetrgl.distributed.link import gather_to_main
from edgetrgl.distributed.trainer import DistributedTrainer
from edgetrgl.errors import UserError
from edgetrgl.memory.process import peak_rss_bytes
from edgetrgl.metrics import make_logger
from edgetrgl.network import build_network
from edgetrgl.planning.run_plan import RunPlan, make_plan
from edgetrgl.tables import module_table
from edgetrgl.training.api import RunResult, describe_position, load_data, spec_dict, versions
from edgetrgl.training.regimes import get_regime
from edgetrgl.training.run_dir import agreed_changes, prepare_run_dir, read_json, save_weights, truncate_metrics, write_json
from edgetrgl.training.run_lock import hold_run_dir


def _mode(cfg: TrainConfig) -> str:
    return "--data-parallel" if cfg.data_parallel else f"the {cfg.regime} regime"


def train(cfg: TrainConfig, *, model=None, data: tuple | None = None, out: str | Path | None = None,
          overwrite: bool = False, quiet: bool = False, console: Console | None = None) -> RunResult:
    """:func:`edgetrgl.train` for one rank of a torchrun job (same arguments, same result on rank 0)."""
    env = init_from_env(_mode(cfg), cfg.device, cfg.dist_timeout)
    with contextlib.ExitStack() as lock:  # rank 0's hold on the run folder, released after the group ends
        try:
            run_dir = Path(out) if out else None
            start = agree(lambda: _start(lock, run_dir, overwrite, os.environ.get("TORCHELASTIC_RUN_ID", "")))
            if start == "resume":  # a restart after a lost rank: go on from the last checkpoint
                return _resume(env, run_dir, {}, model, data, quiet, console)
            extra = {"requested_modules": cfg.modules, "torchrun_run_id": os.environ.get("TORCHELASTIC_RUN_ID", "")}
            return _run(env, cfg, None, data or load_data(cfg), model, run_dir, extra, None, quiet,
                        console or Console(stderr=True))
        finally:
            shutdown()


def resume(run_dir: str | Path, *, changes: dict[str, Any] | None = None, model=None, data: tuple | None = None,
           quiet: bool = False, console: Console | None = None) -> RunResult:
    """:func:`edgetrgl.resume` for one rank of a torchrun job."""
    run_dir, changes = Path(run_dir), dict(changes or {})
    saved = TrainConfig.from_dict(read_json(run_dir / "config.json")["config"])
    env = init_from_env(_mode(saved), changes.get("device", saved.device), changes.get("dist_timeout", saved.dist_timeout))
    with contextlib.ExitStack() as lock:
        try:
            agree(lambda: lock.enter_context(hold_run_dir(run_dir, create=False)) and None)
            return _resume(env, run_dir, changes, model, data, quiet, console)
        finally:
            shutdown()


def _start(lock: contextlib.ExitStack, run_dir: Path | None, overwrite: bool, run_id: str) -> str:
    """Rank 0: take the folder's lock, then decide: a fresh run (``new``) or a restart (``resume``)."""
    if run_dir is None:
        return "new"
    lock.enter_context(hold_run_dir(run_dir))  # taken first: an --overwrite of a folder in use deletes nothing
    if restart_count() > 0 and _same_torchrun(run_dir, run_id):
        if read_commit(run_dir) is not None:
            return "resume"
        overwrite = True  # this torchrun run's own first attempt, lost before its first checkpoint
    prepare_run_dir(run_dir, overwrite)
    if overwrite:
        remove_all(run_dir)
    return "new"


def _resume(env: DistEnv, run_dir: Path, changes: dict, model, data, quiet: bool, console) -> RunResult:
    def check() -> None:
        if (run_dir / "summary.json").exists():
            raise UserError(f"the run in {run_dir} has already finished (its results are in summary.json)")

    agree(check)
    state = load_distributed(run_dir, env.rank, env.world_size)
    saved = TrainConfig.from_dict(state["config"])
    timeout = {"dist_timeout": changes.pop("dist_timeout")} if "dist_timeout" in changes else {}
    changed = agreed_changes(saved, changes, "--resume")  # only the device (and the folder) may change
    cfg = saved.replace(**{k: v for k, v in changed.items() if k != "out"}, **timeout, out=str(run_dir))
    return _run(env, cfg, RunPlan.from_dict(state["plan"]), data or load_data(cfg), model, run_dir,
                state.get("extra", {}), state, quiet, console or Console(stderr=True))


def _run(env: DistEnv, cfg: TrainConfig, plan: RunPlan | None, data: tuple, model, run_dir: Path | None, extra: dict,
         state: dict | None, quiet: bool, console: Console) -> RunResult:
    """Plan (rank 0, new runs), build this rank's share of the run, train it, and (rank 0) write the results."""
    train_set, test_set, spec = data
    world, rank, main = env.world_size, env.rank, env.is_main
    regime = get_regime(cfg.regime)
    run_cfg = cfg  # what this rank runs: its share of the global batch under data parallel
    if cfg.data_parallel:
        run_cfg = cfg.replace(batch_size=per_rank_batch(cfg.batch_size, world))
        train_set = shard_dataset(train_set, rank, world)
    if plan is None:  # made once, on rank 0, for every rank (budget, --split balanced, cache)
        shard_spec = dataclasses.replace(spec, num_train=len(train_set))
        plan = RunPlan.from_dict(agree(lambda: _plan(run_cfg, shard_spec, model, run_dir)))
    plan = _on_rank(plan.on_device(str(env.device)), rank)
    net = build_network(cfg.network, spec, model, num_modules=plan.num_modules, boundaries=plan.boundaries, seed=cfg.seed)
    if cfg.sync_bn:
        net = convert_sync_batchnorm(net, env.device)
    layout = [range(net.num_modules)]
    if regime.traits.multi_process:  # the modules are spread over the ranks: as saved, or planned on rank 0
        saved_layout = extra.get("layout")
        layout = ([range(a, b) for a, b in saved_layout] if saved_layout
                  else agree(lambda: _layout(cfg, spec, plan, model, world)))
    if state is not None and run_dir is not None and main:
        truncate_metrics(run_dir / "metrics.jsonl", state["metrics_bytes"])
    writer = make_logger(cfg, run_dir, console, quiet, main=main)
    if run_dir and state is None and main:
        write_json(run_dir / "config.json", {"config": cfg.to_dict(), "plan": plan.to_dict(), "dataset": spec_dict(spec),
                                             "torchrun_run_id": extra.get("torchrun_run_id", "")})
    started = time.perf_counter()
    trainer = DistributedTrainer(run_cfg, plan, net, train_set, test_set, writer, env=env, layout=layout, saved_cfg=cfg,
                                 run_dir=run_dir)
    if cfg.data_parallel:
        for k in range(net.num_modules):
            average_gradients(trainer.optimizers[k], lambda k=k: [net.stages[k], net.heads[k]])
    trainer.extra = {**extra, "layout": [[r.start, r.stop] for r in layout], "world_size": world}
    if state is not None:
        trainer.load_state_dict(state)
        started -= state.get("wall_time_s", 0.0)
    trainer.started = started
    mode = f"{regime.name} over {world} ranks" + (", data parallel" if cfg.data_parallel else "")
    writer.log({"event": "resume" if state is not None else "start", "device": str(env.device), "world_size": world,
                "layout": trainer.extra["layout"], "modules": net.num_modules, "cache": plan.cache.mode,
                "position": trainer.position},
               echo=f"{'resuming' if state is not None else 'edgetrgl:'} {mode} on {spec.name}, {plan.model} in "
                    f"{net.num_modules} module(s), {env.device}"
                    + (f", from {describe_position(trainer.position, regime)}" if state is not None else ""))
    try:
        modules = trainer.train()
        ranks = gather_to_main([{"rank": rank, "modules": [k + 1 for k in trainer.owned],
                                 "peak_rss_bytes": peak_rss_bytes(),
                                 "peak_bytes": max((modules[k]["peak_bytes"] or 0) for k in trainer.owned),
                                 "time_s": round(time.perf_counter() - started, 3)}])
        if len(layout) > 1:
            _collect_modules(trainer, modules)
    finally:
        writer.close()
        if plan.cache.scratch and plan.cache.folder:
            shutil.rmtree(plan.cache.folder, ignore_errors=True)
    for record, planned in zip(modules, (plan.estimates or {}).get("modules") or []):
        record["estimated_peak_bytes"] = planned["estimated_peak_bytes"]
    result = RunResult(cfg, net, spec, modules, time.perf_counter() - started, run_dir,
                       extra={**trainer.extra, "plan": plan.to_dict(), "cache": plan.cache.mode,
                              "cache_reason": plan.cache.reason, "ranks": ranks, "data_mode": trainer.data_mode,
                              "device": str(env.device), "versions": versions()})
    if main and run_dir:
        net.to("cpu")
        save_weights(run_dir / "model.pt", net, {"config": cfg.to_dict(), "plan": plan.to_dict(), "dataset": spec_dict(spec)})
        write_json(run_dir / "summary.json", result.summary())
    if main and not quiet:
        console.print(module_table(modules, f"{plan.model} / {mode} / {spec.name}", plan.budget))
    dist.barrier()  # every rank leaves with the run folder complete
    if run_dir is not None:
        prune(run_dir, rank, keep_from=trainer.serial)  # the final checkpoint's parts stay, older ones go
    return result


def _plan(cfg: TrainConfig, spec, model, run_dir: Path | None) -> dict:
    """Rank 0: the run plan (a plain dict, to broadcast); a temporary cache folder it made is dropped
    (each rank makes its own, see :func:`_on_rank`)."""
    plan, _ = make_plan(cfg, spec, model, run_dir)
    if plan.cache.scratch and plan.cache.folder:
        shutil.rmtree(plan.cache.folder, ignore_errors=True)
    return plan.to_dict()


def _on_rank(plan: RunPlan, rank: int) -> RunPlan:
    """The plan with this rank's own cache folder: each rank caches its own shard."""
    if not plan.cache.folder:
        return plan
    folder = tempfile.mkdtemp(prefix="edgetrgl-cache-") if plan.cache.scratch else str(Path(plan.cache.folder) / f"rank{rank}")
    return dataclasses.replace(plan, cache=dataclasses.replace(plan.cache, folder=folder))


def _collect_modules(trainer: DistributedTrainer, modules: list[dict]) -> None:
    """Pipeline: rank 0 gathers every rank's module records and weights, and logs the modules."""
    net, owned = trainer.net, trainer.owned
    records = gather_to_main([(k, modules[k]) for k in owned])
    prefixes = tuple(f"stages.{k}." for k in owned) + tuple(f"heads.{k}." for k in owned)
    weights = gather_to_main([(n, t.detach().cpu()) for n, t in net.state_dict().items() if n.startswith(prefixes)])
    if trainer.env.is_main:
        for k, record in records:
            modules[k] = record
        net.to("cpu").load_state_dict(dict(weights), strict=False)
        for k in range(net.num_modules):
            trainer.log_module(k, 0)


def _layout(cfg: TrainConfig, spec, plan: RunPlan, model, world: int) -> list[range]:
    rank_layout(plan.num_modules, world)  # more ranks than modules: say so before estimating anything
    weights = module_weights(cfg, spec, plan, model) if cfg.pipeline_split == "memory" else None
    return rank_layout(plan.num_modules, world, weights)


def _same_torchrun(run_dir: Path, run_id: str) -> bool:
    """Did this torchrun run (same ``TORCHELASTIC_RUN_ID``) start the run in ``run_dir``?"""
    try:
        return bool(run_id) and json.loads((run_dir / "config.json").read_text()).get("torchrun_run_id") == run_id
    except (OSError, ValueError):
        return False
