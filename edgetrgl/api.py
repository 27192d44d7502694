"""The Python API, the front door: train, resume, auto-resume, build, evaluate, load a finished run.

Where a run goes: ``auto_resume=True`` to :func:`train_or_resume`; a multi-process regime or
``--data-parallel`` to torchrun's ranks (:mod:`edgetrgl.distributed.run`); anything else to one
process. Every one of them runs the same body, :func:`edgetrgl.training.run.run`. This module sits
above both ``training/`` and ``distributed/``; nothing in the package below imports it.

``--auto-resume`` (:func:`train_or_resume`): one command line that is safe to run again and again
(a service restarting it). What it does depends on what the run folder holds:

    nothing (or no run files)              start the run
    checkpoint.pt, no summary.json         resume it from its last checkpoint
    summary.json                           finished: print its results, touch nothing, succeed
    only config.json / metrics.jsonl       killed before its first checkpoint: nothing is lost, start again
    anything else (e.g. model.pt alone)    refuse, naming what is there

The decision is taken while holding the folder's write lock (``training/run_lock.py``), so two
copies of the same command cannot both start or both resume the run: the second is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from edgetrgl.config import TrainConfig
from edgetrgl.data import DataSpec
from edgetrgl.errors import UserError
from edgetrgl.heads import HeadFactory
from edgetrgl.models import BlockNet
from edgetrgl.modular import ModularNet
from edgetrgl.network import build_network as _build_split
from edgetrgl.planning.run_plan import requested_split
from edgetrgl.training.evaluation import evaluate_heads
from edgetrgl.training.loading import load_data, with_head_factory
from edgetrgl.training.regimes import get_regime
from edgetrgl.training.results import RunResult, load_run, print_result
from edgetrgl.planning.run_plan import RunPlan
from edgetrgl.planning.solver import AUTO, MODULE_WISE
from edgetrgl.training.run import dry_run, resume_in_process, runs_on_ranks, train_in_process
from edgetrgl.training.run_dir import RUN_FILES, agreed_changes, read_json
from edgetrgl.training.run_lock import hold_run_dir

__all__ = ["RunResult", "build_network", "evaluate", "load_data", "load_run", "plan", "resume", "run_state", "train",
           "train_or_resume"]


def build_network(cfg: TrainConfig, spec: DataSpec, model: BlockNet | None = None,
                  head_factory: HeadFactory | None = None) -> ModularNet:
    """Create (or take) the model and split it as ``cfg`` asks for its regime (e2e: one module).

    ``train`` plans before it builds (a budget or ``--split balanced`` may move the boundaries);
    this builds the unplanned split, for inspecting a network. ``head_factory`` (or
    ``model.head_factory``) builds every module's head; default: the head that fits each module's
    output shape (see :mod:`edgetrgl.heads`).
    """
    traits = get_regime(MODULE_WISE if cfg.regime == AUTO else cfg.regime).traits  # auto: the module-wise split
    num_modules, boundaries = requested_split(cfg, traits)
    model = with_head_factory(model, head_factory, cfg, spec)
    return _build_split(cfg.network, spec, model, num_modules=num_modules, boundaries=boundaries, seed=cfg.seed,
                        method=cfg.method, objective_options=cfg.objective_options)


def plan(cfg: TrainConfig | None = None, *, model: BlockNet | None = None, data: tuple | None = None,
         quiet: bool = False, console: Console | None = None, head_factory: HeadFactory | None = None) -> RunPlan:
    """What :func:`train` would do, without training or writing anything: the plan (device, modules,
    micro-batch, step options, cache), printed unless ``quiet``; with ``regime="auto"`` also every
    way to train that was weighed (``plan.solver``).

    Raises:
        UserError: as :func:`train` does before it trains (bad configuration, nothing fits).
    """
    cfg = cfg or TrainConfig()
    if model is not None and cfg.model != model.name:
        cfg = cfg.replace(model=model.name)
    return dry_run(cfg, data=data, model=model, head_factory=head_factory, quiet=quiet, console=console)


def train(cfg: TrainConfig | None = None, *, model: BlockNet | None = None, data: tuple | None = None,
          out: str | Path | None = None, overwrite: bool = False, quiet: bool = False,
          console: Console | None = None, auto_resume: bool = False,
          head_factory: HeadFactory | None = None) -> RunResult:
    """Train a network module by module (or end to end) and write a run folder.

    Args:
        cfg: the configuration (default: ``TrainConfig()``, the bundled MNIST sample).
        model: your own network as a :class:`BlockNet` (default: ``cfg.model`` from the registry).
        data: ``(train, test, spec)`` as returned by :func:`edgetrgl.data.load_dataset` (default:
            ``cfg.dataset``).
        out: run folder (default ``cfg.out``); ``None`` and ``cfg.out == ""`` writes nothing.
        overwrite: replace an existing run in ``out``.
        quiet: no console output.
        head_factory: ``factory(feature_shape, num_classes) -> nn.Module``, every module's head
            (default: the head that fits each module's output shape).
        auto_resume: start the run if ``out`` holds none, resume it if it is unfinished, return it
            (nothing rewritten) if it has finished; see :func:`train_or_resume`.

    Returns:
        A :class:`RunResult`.

    Raises:
        UserError: bad configuration or data, or ``out`` holds a run and ``overwrite`` is False.
        RunDirLocked: another process is writing into ``out``.
        Interrupted: SIGINT/SIGTERM; a checkpoint was written and :func:`resume` continues the run.
    """
    cfg = cfg or TrainConfig()
    if model is not None and cfg.model != model.name:  # reports name your network, not the registry default
        cfg = cfg.replace(model=model.name)
    out = cfg.out if out is None else out
    options = dict(model=model, data=data, quiet=quiet, console=console, head_factory=head_factory)
    if auto_resume:
        if overwrite:
            raise UserError("--auto-resume and --overwrite contradict each other")
        return train_or_resume(cfg, out=out, **options)
    if runs_on_ranks(cfg):  # torchrun: one process per rank (edgetrgl.distributed)
        from edgetrgl.distributed.run import train as train_ranks  # torch.distributed only when asked for

        return train_ranks(cfg, out=out, overwrite=overwrite, **options)
    return train_in_process(cfg, out=out, overwrite=overwrite, **options)


def resume(run_dir: str | Path, *, changes: dict[str, Any] | None = None, model: BlockNet | None = None,
           data: tuple | None = None, quiet: bool = False, console: Console | None = None,
           head_factory: HeadFactory | None = None) -> RunResult:
    """Continue an interrupted run exactly where its last checkpoint left it.

    Args:
        run_dir: the run folder.
        changes: settings given again by the user; each must equal the saved one, except
            ``device`` (a run may move to another device) and ``out``.
        model, data, head_factory: as for :func:`train`, when the run used your own network, data or heads.

    Raises:
        UserError: no or corrupt checkpoint, a finished run, or ``changes`` contradicting the run.
        RunDirLocked: another process is writing into ``run_dir``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such run folder")
    options = dict(changes=changes, model=model, data=data, quiet=quiet, console=console, head_factory=head_factory)
    saved_config = run_dir / "config.json"
    if saved_config.exists() and runs_on_ranks(TrainConfig.from_dict(read_json(saved_config)["config"])):
        from edgetrgl.distributed.run import resume as resume_ranks

        return resume_ranks(run_dir, **options)
    return resume_in_process(run_dir, **options)


def evaluate(net: ModularNet, dataset, batch_size: int = 256, device: str | torch.device = "cpu") -> list[float]:
    """Test accuracy of every module's head on ``dataset`` (one pass)."""
    return evaluate_heads(net.to(device), dataset, batch_size, device)


# ---- --auto-resume -----------------------------------------------------------------------------
NEW, UNFINISHED, FINISHED, NO_CHECKPOINT = "new", "unfinished", "finished", "no checkpoint"
FLAG = "--auto-resume"


def run_state(run_dir: str | Path) -> str:
    """What a run folder holds: ``new``, ``unfinished``, ``finished`` or ``no checkpoint``.

    Raises:
        UserError: it holds run files that fit none of these (say, ``model.pt`` alone).
    """
    path = Path(run_dir)
    present = sorted(name for name in RUN_FILES if (path / name).exists())
    if "summary.json" in present:
        return FINISHED
    if "checkpoint.pt" in present:
        return UNFINISHED
    if not present:
        return NEW
    if set(present) <= {"config.json", "metrics.jsonl"}:
        return NO_CHECKPOINT
    raise UserError(f"{path} holds {', '.join(present)} but neither checkpoint.pt nor summary.json: {FLAG} cannot "
                    f"tell what to continue; move them away, or start again with --out {path} --overwrite")


def train_or_resume(cfg: TrainConfig | None = None, *, out: str | Path | None = None,
                    changes: dict[str, Any] | None = None, model: BlockNet | None = None, data: tuple | None = None,
                    quiet: bool = False, console: Console | None = None,
                    head_factory: HeadFactory | None = None) -> RunResult:
    """Start, resume or report the run in ``out``, whichever its folder calls for (see the module doc).

    Args:
        cfg: the configuration (default ``TrainConfig()``).
        out: the run folder (default ``cfg.out``).
        changes: the settings the user gave, checked against a saved run as ``resume`` checks them
            (default: every field of ``cfg`` that differs from ``TrainConfig()``).
        model, data, quiet, console, head_factory: as for :func:`edgetrgl.train`.

    Returns:
        The :class:`RunResult`: of the run trained now, or of the finished run as :func:`load_run` reads it.

    Raises:
        UserError: no run folder, a setting contradicting the saved run, or a folder of unknown content.
        RunDirLocked: another process is writing into ``out``.
    """
    cfg = cfg or TrainConfig()
    out = cfg.out if out is None else out
    if runs_on_ranks(cfg):  # each rank would take the folder's lock: torchrun restarts the ranks instead
        raise UserError(f"{FLAG} is for one process; under torchrun, --max-restarts resumes the run")
    if not out:
        raise UserError(f"{FLAG} needs a run folder (--out)")
    if changes is None:
        default = TrainConfig().to_dict()
        changes = {k: v for k, v in cfg.to_dict().items() if k != "out" and v != default[k]}
    console = console or Console(stderr=True)
    run_dir = Path(out)
    if run_dir.is_dir() and run_state(run_dir) == FINISHED:  # a reader: no lock, nothing written
        return _finished(run_dir, changes, model, head_factory, quiet, console)
    options = dict(model=model, data=data, quiet=quiet, console=console, head_factory=head_factory)
    with hold_run_dir(run_dir):
        state = run_state(run_dir)  # again, under the lock: another process may have moved it on
        if state == FINISHED:
            return _finished(run_dir, changes, model, head_factory, quiet, console)
        if state == UNFINISHED:
            if (run_dir / "config.json").exists():  # checked here to name --auto-resume in the message
                agreed_changes(TrainConfig.from_dict(read_json(run_dir / "config.json")["config"]), changes, FLAG)
            return resume_in_process(run_dir, changes=changes, **options)
        if state == NO_CHECKPOINT and not quiet:
            console.print(f"{run_dir} holds no checkpoint yet (the run was stopped before its first one): starting again")
        return train_in_process(cfg, out=run_dir, overwrite=state == NO_CHECKPOINT, **options)


def _finished(run_dir: Path, changes: dict[str, Any], model: BlockNet | None, head_factory: HeadFactory | None,
              quiet: bool, console: Console) -> RunResult:
    """A finished run: check the settings agree, print its results (as the run printed them), return
    it as load_run reads it."""
    agreed_changes(TrainConfig.from_dict(read_json(run_dir / "summary.json")["config"]), changes, FLAG)
    result = load_run(run_dir, model, head_factory)
    if not quiet:
        print_result(console, result, heading=f"the run in {run_dir} has already finished: ")
    return result
