"""``edgetrgl train`` under torchrun: one process per rank, one run folder for all of them.

Rank 0 holds the run folder's write lock (``run_lock.py``) for the whole group, and writes
``config.json``, ``metrics.jsonl``, ``model.pt`` and ``summary.json``; the other ranks write only
their checkpoint parts, and only after rank 0 has taken the lock (they wait for its decision), so
one lock guards the folder (which all ranks must share, e.g. NFS across nodes). Rank 0 also makes
the run plan and hands it to every rank. When torchrun restarts the workers (``--max-restarts``),
they resume from the last complete checkpoint of the same torchrun run by themselves.

The run itself is the single-process body, :func:`edgetrgl.training.run.run`, with this rank's
hooks (:class:`TorchrunRanks`): rank 0 plans and every rank gets the plan, data parallel shards the
data, the pipeline's ranks each own the modules of the plan's layout, and results meet on rank 0.
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
from typing import Any, Callable

import torch.distributed as dist
from rich.console import Console

from edgetrgl.config import TrainConfig
from edgetrgl.distributed.checkpoint import load_distributed, prune, read_commit, remove_all
from edgetrgl.distributed.data_parallel import average_gradients, convert_sync_batchnorm, per_rank_batch, shard_dataset
from edgetrgl.distributed.env import DistEnv, agree, init_from_env, restart_count, shutdown
from edgetrgl.distributed.link import gather_to_main
from edgetrgl.distributed.trainer import DistributedTrainer
from edgetrgl.errors import UserError
from edgetrgl.heads import HeadFactory
from edgetrgl.memory.process import peak_rss_bytes
from edgetrgl.metrics import MetricsWriter
from edgetrgl.modular import ModularNet
from edgetrgl.planning.run_plan import RunPlan
from edgetrgl.training.results import RunResult, load_run
from edgetrgl.training.run import Ranks, run
from edgetrgl.training.run_dir import agreed_changes, prepare_run_dir, read_json
from edgetrgl.training.run_lock import hold_run_dir


def _mode(cfg: TrainConfig) -> str:
    return "--data-parallel" if cfg.data_parallel else f"the {cfg.regime} regime"


def train(cfg: TrainConfig, *, model=None, data: tuple | None = None, out: str | Path | None = None,
          overwrite: bool = False, quiet: bool = False, console: Console | None = None,
          head_factory: HeadFactory | None = None) -> RunResult:
    """:func:`edgetrgl.train` for one rank of a torchrun job (same arguments, same result on rank 0)."""
    if cfg.recalibrate_bn:  # each rank would average its own shard or modules: the ranks' statistics would differ
        raise UserError(f"--recalibrate-bn runs in one process; {_mode(cfg)} under torchrun does not take it")
    env = init_from_env(_mode(cfg), cfg.device, cfg.dist_timeout)
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    options = dict(model=model, data=data, head_factory=head_factory, quiet=quiet, console=console)
    with contextlib.ExitStack() as lock:  # rank 0's hold on the run folder, released after the group ends
        try:
            run_dir = Path(out) if out else None
            start, overwrite = agree(lambda: _start(lock, run_dir, overwrite, run_id))
            if start == "resume":  # a restart after a lost rank: go on from the last checkpoint
                return _resume(env, run_dir, {}, **options)
            if start == "finished":  # a rank lost after rank 0 wrote the results: nothing left to do
                return load_run(run_dir, model, head_factory)
            return run(cfg, TorchrunRanks(env, run_id), run_dir=run_dir, overwrite=overwrite, **options)
        finally:
            shutdown()


def resume(run_dir: str | Path, *, changes: dict[str, Any] | None = None, model=None, data: tuple | None = None,
           quiet: bool = False, console: Console | None = None, head_factory: HeadFactory | None = None) -> RunResult:
    """:func:`edgetrgl.resume` for one rank of a torchrun job."""
    run_dir, changes = Path(run_dir), dict(changes or {})
    saved = TrainConfig.from_dict(read_json(run_dir / "config.json")["config"])
    env = init_from_env(_mode(saved), changes.get("device", saved.device), changes.get("dist_timeout", saved.dist_timeout))
    with contextlib.ExitStack() as lock:
        try:
            agree(lambda: lock.enter_context(hold_run_dir(run_dir, create=False)) and None)
            return _resume(env, run_dir, changes, model=model, data=data, head_factory=head_factory, quiet=quiet,
                           console=console)
        finally:
            shutdown()


def _start(lock: contextlib.ExitStack, run_dir: Path | None, overwrite: bool, run_id: str) -> tuple[str, bool]:
    """Rank 0: take the folder's lock, then decide: a fresh run (``new``), a restart (``resume``), or a
    restart of a run this torchrun run has already finished (``finished``); and whether a fresh run
    replaces what the folder holds."""
    if run_dir is None:
        return "new", overwrite
    lock.enter_context(hold_run_dir(run_dir))  # taken first: an --overwrite of a folder in use deletes nothing
    if restart_count() > 0 and _same_torchrun(run_dir, run_id):
        if (run_dir / "summary.json").exists():  # found by benchmarks/chaos.py: resuming it failed every restart
            return "finished", False
        if read_commit(run_dir) is not None:
            return "resume", False
        overwrite = True  # this torchrun run's own first attempt, lost before its first checkpoint
    return "new", overwrite


def _resume(env: DistEnv, run_dir: Path, changes: dict, **options) -> RunResult:
    def check() -> None:
        if (run_dir / "summary.json").exists():
            raise UserError(f"the run in {run_dir} has already finished (its results are in summary.json)")

    agree(check)
    state = load_distributed(run_dir, env.rank, env.world_size)
    saved = TrainConfig.from_dict(state["config"])
    timeout = {"dist_timeout": changes.pop("dist_timeout")} if "dist_timeout" in changes else {}
    changed = agreed_changes(saved, changes, "--resume")  # only the device (and the folder) may change
    cfg = saved.replace(**{k: v for k, v in changed.items() if k != "out"}, **timeout, out=str(run_dir))
    return run(cfg, TorchrunRanks(env, os.environ.get("TORCHELASTIC_RUN_ID", "")), run_dir=run_dir, state=state,
               **options)


class TorchrunRanks(Ranks):
    """The hooks of one torchrun rank: rank 0 plans and decides for all; data parallel shards the data;
    the pipeline's ranks own the plan's layout; records and weights meet on rank 0."""

    def __init__(self, env: DistEnv, run_id: str = "") -> None:
        self.env, self.run_id = env, run_id
        self.rank, self.world_size, self.is_main = env.rank, env.world_size, env.is_main

    def shard(self, cfg: TrainConfig, train_set, spec):
        if not cfg.data_parallel:
            return cfg, train_set, spec
        train_set = shard_dataset(train_set, self.rank, self.world_size)  # this rank's share of the global batch
        return (cfg.replace(batch_size=per_rank_batch(cfg.batch_size, self.world_size)), train_set,
                dataclasses.replace(spec, num_train=len(train_set)))

    def plan(self, decide: Callable[[], tuple[RunPlan, ModularNet]]) -> tuple[RunPlan, None]:
        def on_rank_0() -> dict:  # a plain dict, to broadcast; a temporary cache folder it made goes (see place)
            plan, _ = decide()
            if plan.cache.scratch and plan.cache.folder:
                shutil.rmtree(plan.cache.folder, ignore_errors=True)
            return plan.to_dict()

        return RunPlan.from_dict(agree(on_rank_0)), None

    def place(self, plan: RunPlan, device: str) -> RunPlan:
        """This rank's GPU, and its own cache folder: each rank caches its own shard."""
        plan = plan.on_device(str(self.env.device))
        if not plan.cache.folder:
            return plan
        folder = (tempfile.mkdtemp(prefix="edgetrgl-cache-") if plan.cache.scratch
                  else str(Path(plan.cache.folder) / f"rank{self.rank}"))
        return dataclasses.replace(plan, cache=dataclasses.replace(plan.cache, folder=folder))

    def prepare_run_dir(self, run_dir: Path, overwrite: bool) -> None:
        def prepare() -> None:  # rank 0, holding the folder's lock
            prepare_run_dir(run_dir, overwrite)
            if overwrite:
                remove_all(run_dir)

        agree(prepare)

    def prepare_net(self, net: ModularNet, cfg: TrainConfig) -> ModularNet:
        return convert_sync_batchnorm(net, self.env.device) if cfg.sync_bn else net

    def fresh_extra(self, cfg: TrainConfig) -> dict[str, Any]:
        return {"requested_modules": cfg.modules, "torchrun_run_id": self.run_id}

    def run_extra(self, layout: list[range]) -> dict[str, Any]:
        return {"layout": [[r.start, r.stop] for r in layout], "world_size": self.world_size}

    def make_trainer(self, cfg: TrainConfig, plan: RunPlan, net: ModularNet, train_set, test_set,
                     writer: MetricsWriter, *, layout: list[range], saved_cfg: TrainConfig,
                     run_dir: Path | None) -> DistributedTrainer:
        if len(layout) not in (1, self.world_size):
            raise UserError(f"the plan spreads the modules over {len(layout)} ranks, this run has {self.world_size}")
        trainer = DistributedTrainer(cfg, plan, net, train_set, test_set, writer, env=self.env, layout=layout,
                                     saved_cfg=saved_cfg, run_dir=run_dir)
        if cfg.data_parallel:
            for k in range(net.num_modules):
                average_gradients(trainer.optimizers[k], lambda k=k: [net.stages[k], net.heads[k]])
        return trainer

    def gather(self, trainer: DistributedTrainer, modules: list[dict], started: float,
               allocator: str | None) -> dict[str, Any]:
        ranks = gather_to_main([{"rank": self.rank, "modules": [k + 1 for k in trainer.owned],
                                 "peak_rss_bytes": peak_rss_bytes(),
                                 "peak_bytes": max((modules[k]["peak_bytes"] or 0) for k in trainer.owned),
                                 "time_s": round(time.perf_counter() - started, 3), "allocator": allocator}])
        if trainer.is_pipeline:
            _collect_modules(trainer, modules)
        return {"ranks": ranks}

    def finish(self, run_dir: Path | None, trainer: DistributedTrainer) -> None:
        dist.barrier()  # every rank leaves with the run folder complete
        if run_dir is not None:
            prune(run_dir, self.rank, keep_from=trainer.serial)  # the final checkpoint's parts stay, older ones go


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
        trainer.log_gathered()


def _same_torchrun(run_dir: Path, run_id: str) -> bool:
    """Did this torchrun run (same ``TORCHELASTIC_RUN_ID``) start the run in ``run_dir``?"""
    try:
        return bool(run_id) and json.loads((run_dir / "config.json").read_text()).get("torchrun_run_id") == run_id
    except (OSError, ValueError):
        return False
