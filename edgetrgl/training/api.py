"""The Python API: build a network, train it in a regime, evaluate it, load a finished run."""

from __future__ import annotations

import copy
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from edgetrgl.config import TrainConfig, format_bytes
from edgetrgl.data import DataSpec, load_dataset
from edgetrgl.errors import UserError
from edgetrgl.finetune import InitPlan, apply_finetune, plan_finetune
from edgetrgl.heads import HeadFactory
from edgetrgl.metrics import make_logger
from edgetrgl.models import BlockNet, create_model
from edgetrgl.modular import ModularNet
from edgetrgl.network import build_network as _build_split
from edgetrgl.planning.run_plan import RunPlan, make_plan
from edgetrgl.tables import module_table, plan_table
from edgetrgl.training.checkpoint import load_checkpoint
from edgetrgl.training.evaluation import evaluate_heads
from edgetrgl.training.phases import describe as describe_phases
from edgetrgl.training.regimes import get_regime
from edgetrgl.training.run_dir import (agreed_changes, prepare_run_dir, read_json, save_weights, truncate_metrics,
                                      write_json)
from edgetrgl.training.run_lock import hold_run_dir
from edgetrgl.training.trainer import Trainer


@dataclass
class RunResult:
    """A finished run: the trained network and its per-module results."""

    config: TrainConfig
    net: ModularNet
    spec: DataSpec | dict
    modules: list[dict[str, Any]]
    wall_time_s: float
    run_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_module(self) -> dict[str, Any]:
        """The module whose head scores best on the test set (often not the last one)."""
        return max(self.modules, key=lambda m: -1.0 if m["test_accuracy"] is None else m["test_accuracy"])

    @property
    def last_module(self) -> dict[str, Any]:
        return self.modules[-1]

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),  # what the user asked for; "plan" says what was resolved, and why
            "model": self.extra.get("plan", {}).get("model", self.config.model),
            "dataset": spec_dict(self.spec),
            "modules": self.modules,
            "best_module": {k: self.best_module[k] for k in ("module", "test_accuracy")},
            "last_module": {k: self.last_module[k] for k in ("module", "test_accuracy")},
            "wall_time_s": round(self.wall_time_s, 3),
            "peak_bytes": max((m["peak_bytes"] or 0) for m in self.modules),
            "peak_rss_bytes": max((m["peak_rss_bytes"] or 0) for m in self.modules),
            **self.extra,
        }


def build_network(cfg: TrainConfig, spec: DataSpec, model: BlockNet | None = None,
                  head_factory: HeadFactory | None = None) -> ModularNet:
    """Create (or take) the model and split it as ``cfg`` asks for its regime (e2e: one module).

    ``train`` plans before it builds (a budget or ``--split balanced`` may move the boundaries);
    this builds the unplanned split, for inspecting a network. ``head_factory`` (or
    ``model.head_factory``) builds every module's head; default: the head that fits each module's
    output shape (see :mod:`edgetrgl.heads`).
    """
    modular = get_regime(cfg.regime).traits.modular
    model = _with_head_factory(model, head_factory, cfg, spec)
    return _build_split(cfg.network, spec, model, num_modules=cfg.modules if modular else 1,
                        boundaries=cfg.boundaries if modular else None, seed=cfg.seed)


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
            (nothing rewritten) if it has finished; see :func:`edgetrgl.training.auto_resume.train_or_resume`.

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
    if runs_on_ranks(cfg) and not auto_resume:  # torchrun: one process per rank (edgetrgl.distributed)
        from edgetrgl.distributed.run import train as train_ranks

        if head_factory is not None:
            data = data or load_data(cfg)
            model = _with_head_factory(model, head_factory, cfg, data[2])
        return train_ranks(cfg, model=model, data=data, out=out, overwrite=overwrite, quiet=quiet, console=console)
    if auto_resume:
        from edgetrgl.training.auto_resume import train_or_resume

        if overwrite:
            raise UserError("--auto-resume and --overwrite contradict each other")
        return train_or_resume(cfg, out=out, model=model, data=data, quiet=quiet, console=console)
    with hold_run_dir(out):  # taken first: an --overwrite of a folder in use deletes nothing
        console = console or Console(stderr=True)
        data = data or load_data(cfg)
        model = _with_head_factory(model, head_factory, cfg, data[2])
        plan, net = make_plan(cfg, data[2], model, Path(out) if out else None)
        init = plan_finetune(_as_planned(cfg, plan), data[2], model)  # a mismatching --init-from fails first
        run_dir = prepare_run_dir(out, overwrite) if out else None  # only now is anything in the folder touched
        if plan.estimates and plan.estimates.get("modules") and not quiet:
            console.print(plan_table(plan.estimates))
        return _run(cfg, plan, net, data, run_dir, None, quiet, console, init)


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
    saved_config = run_dir / "config.json"
    if saved_config.exists() and runs_on_ranks(TrainConfig.from_dict(read_json(saved_config)["config"])):
        from edgetrgl.distributed.run import resume as resume_ranks

        return resume_ranks(run_dir, changes=changes, model=model, data=data, quiet=quiet, console=console)
    with hold_run_dir(run_dir, create=False):  # one writer: refused while another process trains it
        if (run_dir / "summary.json").exists():
            raise UserError(f"the run in {run_dir} has already finished (its results are in summary.json)")
        state = load_checkpoint(run_dir)
        saved = TrainConfig.from_dict(state["config"])
        changed = agreed_changes(saved, changes or {}, "--resume")
        cfg = saved.replace(**{k: v for k, v in changed.items() if k != "out"}, out=str(run_dir))
        plan = RunPlan.from_dict(state["plan"], config=saved).on_device(cfg.device)
        data = data or load_data(cfg)
        model = _with_head_factory(model, head_factory, cfg, data[2])
        net = _build_split(cfg.network, data[2], model, num_modules=plan.num_modules, boundaries=plan.boundaries,
                           seed=cfg.seed)
        console = console or Console(stderr=True)
        return _run(cfg, plan, net, data, run_dir, state, quiet, console)


def _run(cfg: TrainConfig, plan: RunPlan, net: ModularNet, data: tuple, run_dir: Path | None, state: dict | None,
         quiet: bool, console: Console, init: InitPlan | None = None) -> RunResult:
    """(Re)load and train as planned; write the results. Shared by :func:`train` and :func:`resume`."""
    train_set, test_set, spec = data
    init_report = apply_finetune(net, _as_planned(cfg, plan), init)  # --init-from (fresh runs), --freeze-modules
    if init_report is not None and not quiet:
        console.print(init.describe())
    if state is not None and run_dir is not None:
        truncate_metrics(run_dir / "metrics.jsonl", state["metrics_bytes"])  # drop records past the checkpoint
    writer = make_logger(cfg, run_dir, console, quiet)
    if run_dir and state is None:
        write_json(run_dir / "config.json", {"config": cfg.to_dict(), "plan": plan.to_dict(), "dataset": spec_dict(spec)})
    started = time.perf_counter()
    trainer = Trainer(cfg, plan, net, train_set, test_set, writer, run_dir=run_dir)
    if state is not None:
        trainer.load_state_dict(state)
        started -= state.get("wall_time_s", 0.0)
    trainer.started = started
    regime = plan.regime_spec
    what = "resuming" if state is not None else "edgetrgl:"
    method = f" {cfg.method}" if regime.traits.transport else ""
    writer.log({"event": "resume" if state is not None else "start", "device": plan.device,
                "modules": net.num_modules, "cache": plan.cache.mode, "position": trainer.position},
               echo=f"{what} {regime.name}{method} on {spec.name}, {plan.model} in {net.num_modules} module(s), "
                    f"device {plan.device}" + (f", from {describe_position(trainer.position, regime)}" if state is not None else ""))
    try:
        modules = trainer.train()
    finally:
        writer.close()
        if plan.cache.scratch and plan.cache.folder:
            shutil.rmtree(plan.cache.folder, ignore_errors=True)
    per_module = (plan.estimates or {}).get("modules") or []
    for record, planned in zip(modules, per_module):
        record["estimated_peak_bytes"] = planned["estimated_peak_bytes"]
    extra = {"plan": plan.to_dict(), "cache": plan.cache.mode, "cache_reason": plan.cache.reason,
             **({"init_from": init_report} if init_report is not None else {}),
             "data_mode": trainer.data_mode, "device": plan.device, "versions": versions()}
    wall_time_s = time.perf_counter() - started
    extra["phases_s"] = trainer.phases.report(wall_time_s)  # where the wall time went
    result = RunResult(cfg, net, spec, modules, wall_time_s, run_dir, extra=extra)
    if run_dir:
        net.to("cpu")
        save_weights(run_dir / "model.pt", net, {"config": cfg.to_dict(), "plan": plan.to_dict(), "dataset": spec_dict(spec)})
        write_json(run_dir / "summary.json", result.summary())
    if not quiet:
        console.print(module_table(modules, f"{plan.model} / {regime.name} / {spec.name}", plan.budget))
        if plan.process and plan.process.get("scope") == "process":
            anon = max((m.get("anon_bytes") or 0) for m in modules)
            budget = plan.process["budget_bytes"]
            console.print(f"whole process on {plan.process['profile']}: {format_bytes(anon)} anonymous memory at the "
                          f"largest module end, {100 * anon / budget:.0f}% of the {format_bytes(budget)} budget "
                          f"(estimated peak {format_bytes(plan.process['estimated_peak_bytes'])}); peak RSS "
                          f"{format_bytes(max((m.get('peak_rss_bytes') or 0) for m in modules))} counts shared "
                          f"libraries too, which the kernel can reclaim")
        console.print(f"time: {describe_phases(extra['phases_s'])}")
        best, last = result.best_module, result.last_module
        console.print(f"best module {best['module']}: {100 * best['test_accuracy']:.2f}%   "
                      f"last module {last['module']}: {100 * last['test_accuracy']:.2f}%   "
                      f"wall time {result.wall_time_s:.1f} s" + (f"   run folder {run_dir}" if run_dir else ""))
    return result


def _as_planned(cfg: TrainConfig, plan: RunPlan) -> TrainConfig:
    """``cfg`` with the plan's modules, for fine-tuning's checks (e2e keeps the requested split: its
    frozen prefix is the first N modules of that split)."""
    if plan.num_modules == 1 and not get_regime(cfg.regime).traits.modular:
        return cfg
    return cfg.replace(modules=plan.num_modules, boundaries=plan.boundaries)


def runs_on_ranks(cfg: TrainConfig) -> bool:
    """Does ``cfg`` run one process per rank under torchrun (a multi-process regime, or data parallel)?

    Raises:
        UserError: data parallel asked of a regime that is itself multi-process.
    """
    regime = get_regime(cfg.regime)
    if cfg.data_parallel and regime.traits.multi_process:
        raise UserError(f"--data-parallel is for the single-process regimes, not {regime.name} "
                        f"(it spreads the modules over the ranks itself)")
    return regime.traits.multi_process or cfg.data_parallel


def _with_head_factory(model: BlockNet | None, head_factory: HeadFactory | None, cfg: TrainConfig,
                       spec: DataSpec) -> BlockNet | None:
    """The model carrying ``head_factory``, so every builder downstream (plan, run) uses it.

    A registry model is created here for that, seeded as the run would seed it."""
    if head_factory is None:
        return model
    if model is None:
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, in_channels=spec.in_channels, num_classes=spec.num_classes,
                             image_size=spec.image_size, **cfg.model_options)
    model = copy.copy(model)  # the caller's object stays as it was
    model.head_factory = head_factory
    return model


def load_data(cfg: TrainConfig) -> tuple:
    """``(train, test, spec)`` of ``cfg``'s dataset, as :func:`train` loads it."""
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, augment=cfg.augment,
                        train_fraction=cfg.train_fraction, seed=cfg.seed, **cfg.dataset_options)


def describe_position(position: dict, regime) -> str:
    """Where a resumed run goes on, in words ("module 2, epoch 1, batch 5")."""
    if regime.traits.needs_cache:  # one module at a time: the position names the module
        lap = f"lap {position['lap'] + 1}, " if position.get("lap") else ""
        return f"{lap}module {position['module'] + 1}, epoch {position['epoch'] + 1}, batch {position['batch'] + 1}"
    return f"epoch {position['epoch'] + 1}, batch {position['batch'] + 1}"


def load_run(path: str | Path, model: BlockNet | None = None, head_factory: HeadFactory | None = None) -> RunResult:
    """Load a finished run folder: its network (weights loaded, on CPU, eval mode) and results.

    Args:
        path: the run folder.
        model: the same :class:`BlockNet` structure, for runs of your own network.
        head_factory: the same head factory, for runs that used one.

    Raises:
        UserError: not a run folder, or a corrupt one.
    """
    path = Path(path)
    summary = read_json(path / "summary.json")
    cfg = TrainConfig.from_dict(summary["config"])
    saved_spec = summary["dataset"]
    spec = DataSpec(**{**saved_spec, "mean": tuple(saved_spec["mean"]), "std": tuple(saved_spec["std"]),
                       "sample_shape": tuple(saved_spec["sample_shape"]) if saved_spec.get("sample_shape") else None})
    plan = summary.get("plan")
    if plan is None:
        raise UserError(f"{path / 'summary.json'} has no run plan: it was written by an older edgetrgl")
    model = _with_head_factory(model, head_factory, cfg, spec)
    net = _build_split(cfg.network, spec, model, num_modules=plan["num_modules"], boundaries=plan["boundaries"])
    try:
        saved = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(saved["state_dict"])
    except FileNotFoundError:
        raise UserError(f"{path / 'model.pt'} not found: the run did not finish") from None
    except (RuntimeError, KeyError, EOFError) as exc:
        raise UserError(f"{path / 'model.pt'} is corrupt or does not match the run's model: {str(exc).splitlines()[0]}") from None
    net.eval()
    extra = {k: v for k, v in summary.items() if k not in ("config", "dataset", "modules", "wall_time_s")}
    return RunResult(cfg, net, spec, summary["modules"], summary["wall_time_s"], path, extra)


def evaluate(net: ModularNet, dataset, batch_size: int = 256, device: str | torch.device = "cpu") -> list[float]:
    """Test accuracy of every module's head on ``dataset`` (one pass)."""
    return evaluate_heads(net.to(device), dataset, batch_size, device)


def spec_dict(spec: DataSpec | dict) -> dict[str, Any]:
    """The data spec as config.json and summary.json record it."""
    return spec if isinstance(spec, dict) else asdict(spec)


def versions() -> dict[str, str]:
    """torch, Python and platform versions, recorded in every summary."""
    return {"torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform()}
