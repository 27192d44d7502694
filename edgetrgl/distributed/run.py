"""``edgetrgl train`` under torchrun: one process per rank, one run folder for all of them.

Rank 0 writes ``config.json``, ``metrics.jsonl``, ``model.pt`` and ``summary.json``; every rank
writes its checkpoint part (the folder must be shared by all ranks, e.g. NFS across nodes).
When torchrun restarts the workers (``--max-restarts``), they resume from the last complete
checkpoint of the same torchrun run by themselves.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console

from edgetrgl.config import TrainConfig
from edgetrgl.distributed.checkpoint import load_distributed, prune, read_commit, remove_all
from edgetrgl.distributed.data_parallel import average_gradients, convert_sync_batchnorm, per_rank_batch, shard_dataset
from edgetrgl.distributed.env import DistEnv, agree, init_from_env, restart_count, shutdown
from edgetrgl.distributed.layout import module_weights, rank_layout
from edgetrgl.distributed.pipeline import gather_to_main
from edgetrgl.distributed.trainer import DistributedTrainer
from edgetrgl.errors import UserError
from edgetrgl.report import MetricsWriter, module_table
from edgetrgl.training.api import RunResult, _load_data, _spec_dict, _versions, _where, build_network
from edgetrgl.training.budget import plan_run
from edgetrgl.training.cache_plan import resolve_cache
from edgetrgl.training.common import peak_rss_bytes
from edgetrgl.training.run_dir import prepare_run_dir, read_json, save_weights, truncate_metrics, write_json


def is_distributed(cfg: TrainConfig) -> bool:
    """Does this configuration run one process per rank?"""
    return cfg.regime == "pipeline" or cfg.data_parallel


def is_distributed_run(run_dir: Path) -> bool:
    """Was the run in ``run_dir`` started under torchrun (its config says so)?"""
    try:
        saved = json.loads((Path(run_dir) / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return False
    return saved.get("regime") == "pipeline" or bool(saved.get("data_parallel"))


def _mode(cfg: TrainConfig) -> str:
    return "the pipeline regime" if cfg.regime == "pipeline" else "--data-parallel"


def train(cfg: TrainConfig, *, model=None, data: tuple | None = None, out: str | Path | None = None,
          overwrite: bool = False, quiet: bool = False, console: Console | None = None) -> RunResult:
    """:func:`edgetrgl.train` for one rank of a torchrun job (same arguments, same result on rank 0)."""
    env = init_from_env(_mode(cfg), cfg.device, cfg.dist_timeout)
    try:
        out = cfg.out if out is None else out
        run_dir = Path(out) if out else None
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
        if run_dir is not None and restart_count() > 0 and _same_torchrun(run_dir, run_id):
            if read_commit(run_dir) is not None:  # a restart after a lost rank: go on from the last checkpoint
                return _resume(env, run_dir, {}, model, data, quiet, console)
            overwrite = True  # this torchrun run's own first attempt, lost before its first checkpoint
        if run_dir is not None:
            agree(lambda: _prepare(run_dir, overwrite))
        data = data or _load_data(cfg)
        extra = {"requested_modules": cfg.modules, "torchrun_run_id": run_id}
        return _run(env, cfg, data, model, run_dir, extra, None, quiet, console or Console(stderr=True))
    finally:
        shutdown()


def resume(run_dir: str | Path, *, changes: dict[str, Any] | None = None, model=None, data: tuple | None = None,
           quiet: bool = False, console: Console | None = None) -> RunResult:
    """:func:`edgetrgl.resume` for one rank of a torchrun job."""
    run_dir = Path(run_dir)
    saved = TrainConfig.from_dict(read_json(run_dir / "config.json")["config"])
    timeout = (changes or {}).get("dist_timeout", saved.dist_timeout)
    env = init_from_env(_mode(saved), (changes or {}).get("device", saved.device), timeout)
    try:
        return _resume(env, run_dir, changes or {}, model, data, quiet, console)
    finally:
        shutdown()


def _resume(env: DistEnv, run_dir: Path, changes: dict, model, data, quiet: bool, console) -> RunResult:
    if (run_dir / "summary.json").exists():
        raise UserError(f"the run in {run_dir} has already finished (its results are in summary.json)")
    state = load_distributed(run_dir, env.rank, env.world_size)
    saved = TrainConfig.from_dict(state["config"])
    for key, value in changes.items():
        if key not in ("device", "out", "dist_timeout") and getattr(saved, key) != value:
            raise UserError(f"--resume: --{key.replace('_', '-')} {value} contradicts the saved run "
                            f"({getattr(saved, key)}); start a new run with --out instead")
    cfg = dataclasses.replace(saved, **{k: v for k, v in changes.items() if k in ("device", "dist_timeout")},
                              out=str(run_dir))
    return _run(env, cfg, data or _load_data(cfg), model, run_dir, state.get("extra", {}), state, quiet,
                console or Console(stderr=True))


def _run(env: DistEnv, cfg: TrainConfig, data: tuple, model, run_dir: Path | None, extra: dict, state: dict | None,
         quiet: bool, console: Console) -> RunResult:
    """Build this rank's share of the run, train it, and (rank 0) write the results."""
    train_set, test_set, spec = data
    world, rank, main = env.world_size, env.rank, env.is_main
    pipeline = cfg.regime == "pipeline"
    run_cfg = cfg
    if cfg.data_parallel:
        run_cfg = dataclasses.replace(cfg, batch_size=per_rank_batch(cfg.batch_size, world))
        train_set = shard_dataset(train_set, rank, world)
    if state is None and not pipeline:  # budget, --modules auto, --split balanced: planned once, for every rank
        planned, plan = agree(lambda: plan_run(run_cfg, spec, model))
        run_cfg = planned
        cfg = dataclasses.replace(planned, batch_size=cfg.batch_size)
        extra = {**extra, "plan": plan.to_dict() if plan is not None else None}
    net = build_network(cfg, spec, model)
    if cfg.sync_bn:
        net = convert_sync_batchnorm(net, env.device)
    if pipeline:
        layout = agree(lambda: _layout(cfg, spec, model, net.num_modules, world))
    else:
        layout = [range(net.num_modules)]
    cache_dir = (Path(cfg.cache_dir) if cfg.cache_dir else (run_dir / "cache" if run_dir else None))
    if cache_dir is not None:
        cache_dir = cache_dir / f"rank{rank}"  # each rank caches its own shard
    if state is None:
        cache_mode, cache_reason = agree(lambda: resolve_cache(run_cfg, net, spec, cache_dir))
        extra = {**extra, "cache": cache_mode, "cache_reason": cache_reason}
        cfg, run_cfg = (dataclasses.replace(c, cache=cache_mode) for c in (cfg, run_cfg))
    elif run_dir is not None and main:
        truncate_metrics(run_dir / "metrics.jsonl", state["metrics_bytes"])
    writer = MetricsWriter(run_dir / "metrics.jsonl" if (run_dir and main) else None, console, quiet or not main)
    if run_dir and state is None and main:
        write_json(run_dir / "config.json", {"config": cfg.to_dict(), "dataset": _spec_dict(spec),
                                             "torchrun_run_id": extra.get("torchrun_run_id", "")})
    started = time.perf_counter()
    trainer = DistributedTrainer(run_cfg, net, train_set, test_set, writer, env=env, layout=layout, saved_cfg=cfg,
                                 cache_dir=cache_dir, run_dir=run_dir)
    if cfg.data_parallel:
        for k in range(net.num_modules):
            average_gradients(trainer.optimizers[k], lambda k=k: [net.stages[k], net.heads[k]])
    trainer.extra = {**extra, "layout": [[r.start, r.stop] for r in layout], "world_size": world}
    if state is not None:
        trainer.load_state_dict(state)
        started -= state.get("wall_time_s", 0.0)
    trainer.started = started
    mode = f"pipeline over {world} ranks" if pipeline else f"{cfg.regime}, data parallel over {world} ranks"
    writer.log({"event": "resume" if state is not None else "start", "device": str(env.device), "world_size": world,
                "layout": trainer.extra["layout"], "modules": net.num_modules, "position": trainer.position},
               echo=f"{'resuming' if state is not None else 'edgetrgl:'} {mode} on {spec.name}, {cfg.model} in "
                    f"{net.num_modules} module(s), {env.device}"
                    + (f", from {_where(trainer.position, cfg)}" if state is not None else ""))
    try:
        modules = trainer.train()
        ranks = gather_to_main([{"rank": rank, "modules": [k + 1 for k in trainer.owned],
                                 "peak_rss_bytes": peak_rss_bytes(),
                                 "peak_bytes": max((modules[k]["peak_bytes"] or 0) for k in trainer.owned),
                                 "time_s": round(time.perf_counter() - started, 3)}])
        if pipeline:
            _collect_modules(trainer, modules)
    finally:
        writer.close()
    result = RunResult(cfg, net, spec, modules, time.perf_counter() - started, run_dir,
                       extra={**trainer.extra, "ranks": ranks, "data_mode": trainer.data_mode,
                              "device": str(env.device), "versions": _versions()})
    if main and run_dir:
        net.to("cpu")
        save_weights(run_dir / "model.pt", net, {"config": cfg.to_dict(), "dataset": _spec_dict(spec)})
        write_json(run_dir / "summary.json", result.summary())
    if main and not quiet:
        console.print(module_table(modules, f"{cfg.model} / {mode} / {spec.name}", cfg.budget))
    dist.barrier()  # every rank leaves with the run folder complete
    if run_dir is not None:
        prune(run_dir, rank, keep_from=trainer.serial)  # the final checkpoint's parts stay, older ones go
    return result


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


def _layout(cfg: TrainConfig, spec, model, num_modules: int, world: int) -> list[range]:
    rank_layout(num_modules, world)  # more ranks than modules: say so before estimating anything
    weights = module_weights(cfg, spec, model) if cfg.pipeline_split == "memory" else None
    return rank_layout(num_modules, world, weights)


def _prepare(run_dir: Path, overwrite: bool) -> None:
    prepare_run_dir(run_dir, overwrite)
    if overwrite:
        remove_all(run_dir)


def _same_torchrun(run_dir: Path, run_id: str) -> bool:
    """Did this torchrun run (same ``TORCHELASTIC_RUN_ID``) start the run in ``run_dir``?"""
    try:
        return bool(run_id) and json.loads((run_dir / "config.json").read_text()).get("torchrun_run_id") == run_id
    except (OSError, ValueError):
        return False
