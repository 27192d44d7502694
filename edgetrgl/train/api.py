"""The Python API: build a network, train it in a regime, evaluate it, load a finished run."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from edgetrgl.config import TrainConfig
from edgetrgl.data import DataSpec, load_dataset, make_loader
from edgetrgl.errors import UserError
from edgetrgl.models import BlockNet, create_model
from edgetrgl.modular import ModularNet, build_modular, orthogonal_init
from edgetrgl.report import MetricsWriter, module_table, plan_table
from edgetrgl.train.budget import plan_run
from edgetrgl.train.cache_plan import resolve_cache
from edgetrgl.train.common import count_correct
from edgetrgl.train.run_dir import prepare_run_dir, read_json, save_weights, write_json
from edgetrgl.train.trainer import Trainer


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
    net = build_modular(model, modules, spec.num_classes, sample, boundaries=boundaries, head_style=cfg.head)
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
    """
    cfg = cfg or TrainConfig()
    out = cfg.out if out is None else out
    run_dir = prepare_run_dir(out, overwrite) if out else None
    console = console or Console(stderr=True)
    if data is None:
        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, augment=cfg.augment,
                            train_fraction=cfg.train_fraction, seed=cfg.seed, **cfg.dataset_options)
    train_set, test_set, spec = data
    requested = cfg
    cfg, plan = plan_run(cfg, spec, model)
    if plan is not None and not quiet:
        console.print(plan_table(plan))
    net = build_network(cfg, spec, model)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else (run_dir / "cache" if run_dir else None)
    cache_mode, cache_reason = resolve_cache(cfg, net, spec, cache_dir)
    writer = MetricsWriter(run_dir / "metrics.jsonl" if run_dir else None, console, quiet)
    if run_dir:
        write_json(run_dir / "config.json", {"config": cfg.to_dict(), "dataset": _spec_dict(spec)})
    started = time.perf_counter()
    trainer = Trainer(_with_cache(cfg, cache_mode), net, train_set, test_set, writer, cache_dir=cache_dir)
    writer.log({"event": "start", "device": str(trainer.device), "modules": net.num_modules,
                "cache": cache_mode, "cache_reason": cache_reason},
               echo=f"edgetrgl: {cfg.regime} {cfg.method if cfg.regime != 'e2e' else ''} on {spec.name}, "
                    f"{cfg.model} in {net.num_modules} module(s), device {trainer.device}")
    try:
        modules = trainer.train()
    finally:
        writer.close()
    if plan is not None:
        for record, planned in zip(modules, plan.modules):
            record["estimated_peak_bytes"] = planned.estimated_peak_bytes
    result = RunResult(cfg, net, spec, modules, time.perf_counter() - started, run_dir,
                       extra={"data_mode": trainer.data_mode, "cache": cache_mode, "cache_reason": cache_reason,
                              "device": str(trainer.device), "versions": _versions(),
                              "requested_modules": requested.modules,
                              "plan": plan.to_dict() if plan is not None else None})
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


@torch.no_grad()
def evaluate(net: ModularNet, dataset, batch_size: int = 256, device: str | torch.device = "cpu") -> list[float]:
    """Test accuracy of every module's head on ``dataset`` (one pass)."""
    net = net.to(device).eval()
    correct, total = [0] * net.num_modules, 0
    for x, y in make_loader(dataset, batch_size, shuffle=False, augment=False, seed=0):
        x, y = x.to(device), y.to(device)
        for k in range(net.num_modules):
            x = net.stages[k](x)
            correct[k] += count_correct(net.heads[k](x), y)
        total += y.numel()
    return [c / max(total, 1) for c in correct]


def _with_cache(cfg: TrainConfig, mode: str) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, cache=mode)


def _spec_dict(spec: DataSpec | dict) -> dict[str, Any]:
    import dataclasses

    return spec if isinstance(spec, dict) else dataclasses.asdict(spec)


def _versions() -> dict[str, str]:
    return {"torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform()}
