"""The Python API: build a network, train it in a regime, evaluate it, load a finished run."""

from __future__ import annotations

import dataclasses
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from edgetrgl.config import TrainConfig
from edgetrgl.data import DataSpec, load_dataset
from edgetrgl.errors import UserError
from edgetrgl.models import BlockNet, create_model
from edgetrgl.modular import ModularNet, build_modular, orthogonal_init
from edgetrgl.report import MetricsWriter, module_table, plan_table
from edgetrgl.training.budget import plan_run
from edgetrgl.training.cache_plan import resolve_cache
from edgetrgl.training.common import evaluate_heads
from edgetrgl.training.checkpoint import load_checkpoint
from edgetrgl.training.run_dir import prepare_run_dir, read_json, save_weights, truncate_metrics, write_json
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
            "config": self.config.to_dict(),
            "dataset": _spec_dict(self.spec),
            "modules": self.modules,
            "best_module": {k: self.best_module[k] for k in ("module", "test_accuracy")},
            "last_module": {k: self.last_module[k] for k in ("module", "test_accuracy")},
            "wall_time_s": round(self.wall_time_s, 3),
            "peak_bytes": max((m["peak_bytes"] or 0) for m in self.modules),
            "peak_rss_bytes": max((m["peak_rss_bytes"] or 0) for m in self.modules),
            **self.extra,
        }


def build_network(cfg: TrainConfig, spec: DataSpec, model: BlockNet | None = None) -> ModularNet:
    """Create (or take) the model and split it for ``cfg.regime`` (e2e: one module)."""
    torch.manual_seed(cfg.seed)
    if model is None:
        model = create_model(cfg.model, in_channels=spec.in_channels, num_classes=spec.num_classes,
                             image_size=spec.image_size, **cfg.model_options)
    sample = torch.zeros(2, spec.in_channels, spec.image_size, spec.image_size)
    modules = 1 if cfg.regime == "e2e" else cfg.modules
    boundaries = None if cfg.regime == "e2e" else cfg.boundaries
    try:
        net = build_modular(model, modules, spec.num_classes, sample, boundaries=boundaries, head_style=cfg.head)
    except RuntimeError as exc:  # a shape mismatch surfaces in the probe forward pass
        raise UserError(f"images of {spec.in_channels}x{spec.image_size}x{spec.image_size} ({spec.name}) do not fit "
                        f"the model {model.name}: {str(exc).splitlines()[0]}") from None
    if cfg.init == "orthogonal":
        orthogonal_init(net, cfg.init_gain)
    return net


def train(cfg: TrainConfig | None = None, *, model: BlockNet | None = None, data: tuple | None = None,
          out: str | Path | None = None, overwrite: bool = False, quiet: bool = False,
          console: Console | None = None) -> RunResult:
    """Train a network module by module (or end to end) and write a run folder.

    Args:
        cfg: the configuration (default: ``TrainConfig()``, the bundled MNIST sample).
        model: your own network as a :class:`BlockNet` (default: ``cfg.model`` from the registry).
        data: ``(train, test, spec)`` as returned by :func:`edgetrgl.data.load_dataset` (default:
            ``cfg.dataset``).
        out: run folder (default ``cfg.out``); ``None`` and ``cfg.out == ""`` writes nothing.
        overwrite: replace an existing run in ``out``.
        quiet: no console output.

    Returns:
        A :class:`RunResult`.

    Raises:
        UserError: bad configuration or data, or ``out`` holds a run and ``overwrite`` is False.
        Interrupted: SIGINT/SIGTERM; a checkpoint was written and :func:`resume` continues the run.
    """
    cfg = cfg or TrainConfig()
    from edgetrgl.distributed.run import is_distributed, train as train_distributed  # torchrun: one process per rank

    if is_distributed(cfg):
        return train_distributed(cfg, model=model, data=data, out=out, overwrite=overwrite, quiet=quiet, console=console)
    out = cfg.out if out is None else out
    run_dir = prepare_run_dir(out, overwrite) if out else None
    console = console or Console(stderr=True)
    data = data or _load_data(cfg)
    requested = cfg
    cfg, plan = plan_run(cfg, data[2], model)
    if plan is not None and not quiet:
        console.print(plan_table(plan))
    extra = {"requested_modules": requested.modules, "plan": plan.to_dict() if plan is not None else None}
    return _run(cfg, data, model, run_dir, extra, None, quiet, console)


def resume(run_dir: str | Path, *, changes: dict[str, Any] | None = None, model: BlockNet | None = None,
           data: tuple | None = None, quiet: bool = False, console: Console | None = None) -> RunResult:
    """Continue an interrupted run exactly where its last checkpoint left it.

    Args:
        run_dir: the run folder.
        changes: settings given again by the user; each must equal the saved one, except
            ``device`` (a run may move to another device) and ``out``.
        model, data: as for :func:`train`, when the run used your own network or data.

    Raises:
        UserError: no or corrupt checkpoint, a finished run, or ``changes`` contradicting the run.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such run folder")
    if (run_dir / "summary.json").exists():
        raise UserError(f"the run in {run_dir} has already finished (its results are in summary.json)")
    from edgetrgl.distributed.run import is_distributed_run, resume as resume_distributed

    if is_distributed_run(run_dir):
        return resume_distributed(run_dir, changes=changes, model=model, data=data, quiet=quiet, console=console)
    state = load_checkpoint(run_dir)
    saved = TrainConfig.from_dict(state["config"])
    changed = {}
    for key, value in (changes or {}).items():
        if key in ("device", "out"):
            changed[key] = value
        elif getattr(saved, key) != value:
            raise UserError(f"--resume: --{key.replace('_', '-')} {value} contradicts the saved run "
                            f"({getattr(saved, key)}); start a new run with --out instead")
    cfg = dataclasses.replace(saved, **{k: v for k, v in changed.items() if k != "out"}, out=str(run_dir))
    console = console or Console(stderr=True)
    return _run(cfg, data or _load_data(cfg), model, run_dir, state.get("extra", {}), state, quiet, console)


def _run(cfg: TrainConfig, data: tuple, model: BlockNet | None, run_dir: Path | None, extra: dict[str, Any],
         state: dict | None, quiet: bool, console: Console) -> RunResult:
    """Build, (re)load and train; write the results. Shared by :func:`train` and :func:`resume`."""
    train_set, test_set, spec = data
    net = build_network(cfg, spec, model)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else (run_dir / "cache" if run_dir else None)
    scratch = None
    if cache_dir is None and cfg.regime in ("sequential", "multilap"):
        cache_dir = scratch = Path(tempfile.mkdtemp(prefix="edgetrgl-cache-"))  # no run folder: a temporary one
    if state is None:
        cache_mode, cache_reason = resolve_cache(cfg, net, spec, cache_dir)
        extra = {**extra, "cache": cache_mode, "cache_reason": cache_reason}
        cfg = dataclasses.replace(cfg, cache=cache_mode)
    elif run_dir is not None:
        truncate_metrics(run_dir / "metrics.jsonl", state["metrics_bytes"])  # drop records past the checkpoint
    writer = MetricsWriter(run_dir / "metrics.jsonl" if run_dir else None, console, quiet)
    if run_dir and state is None:
        write_json(run_dir / "config.json", {"config": cfg.to_dict(), "dataset": _spec_dict(spec)})
    started = time.perf_counter()
    trainer = Trainer(cfg, net, train_set, test_set, writer, cache_dir=cache_dir, run_dir=run_dir)
    trainer.extra = extra
    if state is not None:
        trainer.load_state_dict(state)
        started -= state.get("wall_time_s", 0.0)
    trainer.started = started
    what = "resuming" if state is not None else "edgetrgl:"
    writer.log({"event": "resume" if state is not None else "start", "device": str(trainer.device),
                "modules": net.num_modules, "cache": cfg.cache, "position": trainer.position},
               echo=f"{what} {cfg.regime} {cfg.method if cfg.regime != 'e2e' else ''} on {spec.name}, "
                    f"{cfg.model} in {net.num_modules} module(s), device {trainer.device}"
                    + (f", from {_where(trainer.position, cfg)}" if state is not None else ""))
    try:
        modules = trainer.train()
    finally:
        writer.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    plan = extra.get("plan")
    if plan is not None:
        for record, planned in zip(modules, plan["modules"]):
            record["estimated_peak_bytes"] = planned["estimated_peak_bytes"]
    result = RunResult(cfg, net, spec, modules, time.perf_counter() - started, run_dir,
                       extra={**extra, "data_mode": trainer.data_mode, "device": str(trainer.device),
                              "versions": _versions()})
    if run_dir:
        net.to("cpu")
        save_weights(run_dir / "model.pt", net, {"config": cfg.to_dict(), "dataset": _spec_dict(spec)})
        write_json(run_dir / "summary.json", result.summary())
    if not quiet:
        console.print(module_table(modules, f"{cfg.model} / {cfg.regime} / {spec.name}", cfg.budget))
        best, last = result.best_module, result.last_module
        console.print(f"best module {best['module']}: {100 * best['test_accuracy']:.2f}%   "
                      f"last module {last['module']}: {100 * last['test_accuracy']:.2f}%   "
                      f"wall time {result.wall_time_s:.1f} s" + (f"   run folder {run_dir}" if run_dir else ""))
    return result


def _load_data(cfg: TrainConfig) -> tuple:
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, augment=cfg.augment,
                        train_fraction=cfg.train_fraction, seed=cfg.seed, **cfg.dataset_options)


def _where(position: dict, cfg: TrainConfig) -> str:
    if cfg.regime in ("sequential", "multilap"):
        lap = f"lap {position['lap'] + 1}, " if cfg.regime == "multilap" else ""
        return f"{lap}module {position['module'] + 1}, epoch {position['epoch'] + 1}, batch {position['batch'] + 1}"
    return f"epoch {position['epoch'] + 1}, batch {position['batch'] + 1}"


def load_run(path: str | Path, model: BlockNet | None = None) -> RunResult:
    """Load a finished run folder: its network (weights loaded, on CPU, eval mode) and results.

    Args:
        path: the run folder.
        model: the same :class:`BlockNet` structure, for runs of your own network.

    Raises:
        UserError: not a run folder, or a corrupt one.
    """
    path = Path(path)
    summary = read_json(path / "summary.json")
    cfg = TrainConfig.from_dict(summary["config"])
    spec = DataSpec(**{**summary["dataset"], "mean": tuple(summary["dataset"]["mean"]), "std": tuple(summary["dataset"]["std"])})
    net = build_network(cfg, spec, model)
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


def _spec_dict(spec: DataSpec | dict) -> dict[str, Any]:
    import dataclasses

    return spec if isinstance(spec, dict) else dataclasses.asdict(spec)


def _versions() -> dict[str, str]:
    return {"torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform()}
