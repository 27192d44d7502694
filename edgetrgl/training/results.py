"""A run's results: :class:`RunResult`, what ``summary.json`` records, and :func:`load_run` to read a
finished run folder back. Below every way of running (one process, torchrun) and the API above them."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from edgetrgl.config import TrainConfig, format_bytes
from edgetrgl.data import DataSpec
from edgetrgl.errors import UserError, first_line
from edgetrgl.heads import HeadFactory
from edgetrgl.models import BlockNet
from edgetrgl.modular import ModularNet
from edgetrgl.network import build_network
from edgetrgl.tables import module_table
from edgetrgl.weights_file import NotAWeightsFile, load_weights_file
from edgetrgl.training.loading import with_head_factory
from edgetrgl.training.phases import describe as describe_phases
from edgetrgl.training.run_dir import read_json


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
    def chosen_by(self) -> str:
        """What :attr:`best_module` is chosen on: ``validation`` or ``test`` (see :func:`pick_best`)."""
        return pick_best(self.modules)[1]

    @property
    def best_module(self) -> dict[str, Any]:
        """The module whose head scores best on the validation split (on the test set where the run
        had none; see :func:`pick_best`); often not the last one."""
        return self.modules[pick_best(self.modules)[0]]

    @property
    def last_module(self) -> dict[str, Any]:
        return self.modules[-1]

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),  # what the user asked for; "plan" says what was resolved, and why
            "model": self.extra.get("plan", {}).get("model", self.config.model),
            "dataset": spec_dict(self.spec),
            "modules": self.modules,
            "best_module": _accuracies(self.best_module),
            "best_module_chosen_by": self.chosen_by,
            "last_module": _accuracies(self.last_module),
            "wall_time_s": round(self.wall_time_s, 3),
            "peak_bytes": max((m["peak_bytes"] or 0) for m in self.modules),
            "peak_rss_bytes": max((m["peak_rss_bytes"] or 0) for m in self.modules),
            **self.extra,
        }


def pick_best(modules: list[dict[str, Any]]) -> tuple[int, str]:
    """``(index, chosen_by)`` of the best module among a run's records: the highest validation
    accuracy where every module has one (``chosen_by`` ``"validation"``), else the highest test
    accuracy (``"test"``: a run without a validation split, whose pick reports an optimistic number).
    Ties go to the earlier module."""
    chosen_by = "validation" if modules and all(m.get("val_accuracy") is not None for m in modules) else "test"
    key = "val_accuracy" if chosen_by == "validation" else "test_accuracy"
    return max(range(len(modules)), key=lambda k: -1.0 if modules[k].get(key) is None else modules[k][key]), chosen_by


def _accuracies(module: dict[str, Any]) -> dict[str, Any]:
    """A module's number and accuracies, as the summary's best and last module show them."""
    return {k: module[k] for k in ("module", "test_accuracy", "val_accuracy") if k in module}


def spec_dict(spec: DataSpec | dict) -> dict[str, Any]:
    """The data spec as config.json and summary.json record it."""
    return spec if isinstance(spec, dict) else asdict(spec)


def versions() -> dict[str, str]:
    """torch, Python and platform versions, recorded in every summary."""
    return {"torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform()}


def describe_position(position: dict, regime) -> str:
    """Where a resumed run goes on, in words ("module 2, epoch 1, batch 5")."""
    if regime.traits.needs_cache:  # one module at a time: the position names the module
        lap = f"lap {position['lap'] + 1}, " if position.get("lap") else ""
        return f"{lap}module {position['module'] + 1}, epoch {position['epoch'] + 1}, batch {position['batch'] + 1}"
    return f"epoch {position['epoch'] + 1}, batch {position['batch'] + 1}"


def over_ranks(world_size: int = 1, data_parallel: bool = False) -> str:
    """How a run was spread: ``""`` in one process, else ``" over 2 ranks"`` (``", data parallel"``)."""
    if world_size <= 1 and not data_parallel:
        return ""
    return f" over {world_size} rank{'s' if world_size > 1 else ''}" + (", data parallel" if data_parallel else "")


def print_result(console: Console, result: RunResult, heading: str = "") -> None:
    """The finished run on the console, from its results alone: the module table (against the plan's
    budget), the whole process on a board, where the time went, best and last module. The same lines
    whether the run was trained now or read back (``--auto-resume`` of a finished run)."""
    plan, modules, spec = result.extra.get("plan") or {}, result.modules, result.spec
    spec_name = spec["name"] if isinstance(spec, dict) else spec.name
    mode = plan.get("regime", result.config.regime) + over_ranks(result.extra.get("world_size", 1),
                                                                 result.config.data_parallel)
    console.print(module_table(modules, f"{plan.get('model', result.config.model)} / {mode} / {spec_name}",
                               plan.get("budget")))
    process = plan.get("process")
    if process and process.get("scope") == "process":
        anon = max((m.get("anon_bytes") or 0) for m in modules)
        budget = process["budget_bytes"]
        console.print(f"whole process on {process['profile']}: {format_bytes(anon)} anonymous memory at the "
                      f"largest module end, {100 * anon / budget:.0f}% of the {format_bytes(budget)} budget "
                      f"(estimated peak {format_bytes(process['estimated_peak_bytes'])}); peak RSS "
                      f"{format_bytes(max((m.get('peak_rss_bytes') or 0) for m in modules))} counts shared "
                      f"libraries too, which the kernel can reclaim")
    if result.extra.get("phases_s"):
        console.print(f"time: {describe_phases(result.extra['phases_s'])}")
    best, last = result.best_module, result.last_module
    by = (f" (chosen by validation {100 * best['val_accuracy']:.2f}%)" if result.chosen_by == "validation"
          else " (chosen on the test set: no validation split)")
    console.print(f"{heading}best module {best['module']}{by}: test {100 * best['test_accuracy']:.2f}%   "
                  f"last module {last['module']}: {100 * last['test_accuracy']:.2f}%   "
                  f"wall time {result.wall_time_s:.1f} s" + (f"   run folder {result.run_dir}" if result.run_dir else ""))


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
    cfg, spec, plan = _summary_parts(summary, path / "summary.json")
    model = with_head_factory(model, head_factory, cfg, spec)
    net = build_network(cfg.network, spec, model, num_modules=plan["num_modules"], boundaries=plan["boundaries"],
                        method=cfg.method, objective_options=cfg.objective_options)
    weights = path / "model.pt"
    try:
        saved = load_weights_file(weights)
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"{weights} not found: the run did not finish") from None
    except NotAWeightsFile as exc:
        raise UserError(f"{weights} is corrupt: {exc.reason}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("state_dict"), dict):
        raise UserError(f"{weights} is corrupt: it holds no state_dict (not written by edgetrgl)")
    try:
        net.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{weights} does not match the run's model: {first_line(exc)}") from None
    net.eval()
    extra = {k: v for k, v in summary.items() if k not in ("config", "dataset", "modules", "wall_time_s")}
    return RunResult(cfg, net, spec, summary["modules"], summary["wall_time_s"], path, extra)


def _summary_parts(summary: Any, where: Path) -> tuple[TrainConfig, DataSpec, dict[str, Any]]:
    """The config, data spec and plan of a run's summary.json, checked for the shape edgetrgl writes.

    Raises:
        UserError: a summary of another shape (edited, or another program's file), naming what is wrong.
    """
    def bad(what: str) -> UserError:
        return UserError(f"{where} is not an edgetrgl run summary: {what}")

    if not isinstance(summary, dict):
        raise bad(f"it holds a {type(summary).__name__}, not a table")
    for key, kind in (("config", dict), ("dataset", dict), ("modules", list), ("wall_time_s", (int, float))):
        if not isinstance(summary.get(key), kind):
            raise bad(f"{key!r} is missing or of the wrong type")
    modules = summary["modules"]
    if not modules or not all(isinstance(m, dict) and "module" in m and "test_accuracy" in m for m in modules):
        raise bad("'modules' lists no module results")
    plan = summary.get("plan")
    if plan is None:
        raise UserError(f"{where} has no run plan: it was written by an older edgetrgl")
    if not isinstance(plan, dict) or not isinstance(plan.get("num_modules"), int) or "boundaries" not in plan:
        raise bad("'plan' lacks num_modules or boundaries")
    cfg = TrainConfig.from_dict(summary["config"])
    saved = summary["dataset"]
    try:
        spec = DataSpec(**{**saved, "mean": tuple(saved["mean"]), "std": tuple(saved["std"]),
                           "sample_shape": tuple(saved["sample_shape"]) if saved.get("sample_shape") else None})
    except (KeyError, TypeError) as exc:  # a missing or unknown field, or a number where a list belongs
        raise bad(f"'dataset' is not a data spec ({type(exc).__name__}: {first_line(exc)})") from None
    return cfg, spec, plan
