"""The Trainer: state of one run (modules, heads, optimizers, tau multipliers) and its loops.

The loops live one per file in ``regimes/`` and read top to bottom: forward, local loss, backward,
step, detach, cache write. The trainer reads the run's :class:`RunPlan`; it decides nothing itself.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch

from edgetrgl.config import TrainConfig
from edgetrgl.errors import UserError
from edgetrgl.losses import TauSchedule
from edgetrgl.memory.process import open_file_count, peak_rss_bytes, rss_bytes
from edgetrgl.memory.tensor import cuda_peaks, track_live_peak
from edgetrgl.metrics import MetricsWriter
from edgetrgl.modular import ModularNet
from edgetrgl.planning.budget import BudgetExceeded
from edgetrgl.planning.run_plan import RunPlan
from edgetrgl.step import count_correct, make_sgd, set_lr
from edgetrgl.training.checkpoint import save_checkpoint
from edgetrgl.training.phases import PhaseClock
from edgetrgl.training.regimes import get_regime

__all__ = ["BudgetExceeded", "Interrupted", "NonFiniteLoss", "Trainer"]


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: training stops rather than writing garbage."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: the current step finished and a checkpoint was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class Trainer:
    """Holds everything a run needs and dispatches to the regime's loop.

    Args:
        cfg: the run's configuration (what the user asked for).
        plan: the run plan (what was resolved: device, budget, modules, cache, offload).
        net: the network split into modules (for ``e2e``: one module).
        train_set, test_set: datasets (see :mod:`edgetrgl.data`).
        writer: the metrics writer (console + metrics.jsonl).
        run_dir: where checkpoints go (None: no checkpoints).
    """

    def __init__(self, cfg: TrainConfig, plan: RunPlan, net: ModularNet, train_set, test_set, writer: MetricsWriter,
                 run_dir: str | Path | None = None) -> None:
        self.cfg, self.plan = cfg, plan
        self.regime = get_regime(plan.regime)
        self.net = net
        self.train_set, self.test_set = train_set, test_set
        self.writer = writer
        self.device = plan.torch_device
        self.budget = plan.budget_policy
        K = net.num_modules
        method = cfg.method if self.regime.traits.transport else "vangl"
        self.tau = TauSchedule(cfg.tau_schedule, cfg.tau, K, method=method, step=cfg.multiplier_step,
                               every=cfg.multiplier_every)
        self.optimizers = [make_sgd(list(net.stages[k].parameters()) + list(net.heads[k].parameters()),
                                    cfg.lr, cfg.momentum, cfg.weight_decay) for k in range(K)]
        self.modules: list[dict[str, Any]] = [
            {"module": k + 1, "blocks": list(net.block_ranges[k]), "test_accuracy": None, "time_s": 0.0,
             "epochs": 0, "peak_bytes": None, "peak_rss_bytes": None}
            for k in range(K)
        ]
        self.data_mode = "dataset"  # the sequential loop replaces it with its cache description
        self.run_dir = Path(run_dir) if run_dir is not None else None
        # what to do next: the loops start here, and a checkpoint records it
        self.position = {"lap": 0, "module": 0, "epoch": 0, "batch": 0}
        self.offloader = None  # set by the sequential loop: frozen modules may live on disk
        self._signal: int | None = None
        self.extra: dict[str, Any] = {}  # plan and cache choice, carried into checkpoints
        self.phases = PhaseClock()  # where the wall time goes (metrics.jsonl, summary.json)
        self._phases_at_module_start = self.phases.snapshot()
        self.started = time.perf_counter()

    def train(self) -> list[dict[str, Any]]:
        """Run the planned regime; return the per-module records."""
        self.budget.limit_cuda(self.device)
        previous = self._install_signal_handlers()
        try:
            self.regime.run(self)
        except torch.OutOfMemoryError:
            raise self.budget.out_of_memory(self.device) from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.modules

    # ---- state, checkpoints, signals -----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is (CPU tensors, plain types)."""
        return {
            "config": self.cfg.to_dict(), "position": dict(self.position), "net": self.net_state(),
            "optimizers": [o.state_dict() for o in self.optimizers], "tau": self.tau.state_dict(),
            "modules": self.modules, "rng": {"torch": torch.get_rng_state()},
            "plan": self.plan.to_dict(), "metrics_bytes": self.writer.tell(), "extra": self.extra,
            "wall_time_s": time.perf_counter() - self.started, "phases_s": self.phases.snapshot(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: weights, optimizers, multipliers, records, position, RNG, phases."""
        self.load_weights(state)
        self.tau.load_state_dict(state["tau"])
        self.modules = state["modules"]
        self.position = dict(state["position"])
        torch.set_rng_state(state["rng"]["torch"])
        self.phases.restore(state.get("phases_s"))

    def load_weights(self, state: dict[str, Any]) -> None:
        """The network's and the optimizers' part of :meth:`load_state_dict`."""
        self.net.load_state_dict(state["net"])
        for optimizer, saved in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(saved)

    def net_state(self) -> dict[str, torch.Tensor]:
        """The whole network's weights on the CPU, including modules offloaded to disk."""
        state = {}
        for k, stage in enumerate(self.net.stages):
            stage_state = self.offloader.stage_state(k) if self.offloader is not None else stage.state_dict()
            state.update({f"stages.{k}.{name}": t.detach().cpu() for name, t in stage_state.items()})
        state.update({f"heads.{name}": t.detach().cpu() for name, t in self.net.heads.state_dict().items()})
        return state

    def checkpoint(self, **position: int) -> None:
        """Record the next position and write a checkpoint (atomically) if the run has a folder."""
        self.position.update(position)
        if self.run_dir is not None:
            with self.phases.phase("checkpoint"):
                save_checkpoint(self.run_dir, self.state_dict())

    @property
    def stop_requested(self) -> bool:
        return self._signal is not None

    def interrupt(self, **position: int) -> None:
        """Called by a loop between steps after a signal: checkpoint, then stop."""
        self.checkpoint(**position)
        name = signal.Signals(self._signal).name
        where = f"; resume with: edgetrgl train --resume {self.run_dir}" if self.run_dir else ""
        raise Interrupted(f"{name} received: stopped after the current step{where}", self._signal)

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum, frame) -> None:
        if self._signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._signal = signum

    # ---- helpers the loops share ---------------------------------------------------------------
    def epochs_for(self, k: int) -> int:
        """Epochs for module k, as the regime says (sequential: base + k * step); 0 for a module frozen
        for fine-tuning (it is evaluated and cached, not trained)."""
        if k < self.cfg.freeze_modules:
            return 0
        return self.regime.module_epochs(self.cfg, k)

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_set) // self.cfg.batch_size)

    def set_lr(self, k: int, step: int, total: int) -> None:
        """Module k's learning rate at ``step`` of its ``total`` (``--lr-schedule``)."""
        set_lr(self.optimizers[k], self.cfg.lr_schedule, self.cfg.lr, step, total)

    def check_finite(self, ce: float, k: int, epoch: int) -> None:
        if ce != ce or ce in (float("inf"), float("-inf")):
            raise NonFiniteLoss(f"loss became {ce} in module {k + 1}, epoch {epoch + 1}: lower --lr or raise --tau")

    @staticmethod
    def measure_at(total_steps: int) -> int:
        """The step whose memory is measured: the second, when gradients and momentum already exist
        (the steady state the planner estimates), or the only one."""
        return 1 if total_steps > 1 else 0

    def measured_step(self, k: int | None, step_fn, *external) -> Any:
        """Run a step under the tensor-level counter and record its peak for module k (None: the
        whole parallel step, recorded for every module).

        On the CPU this is where the budget is enforced: the step's tensors must fit in it.
        """
        result = {}
        peak = track_live_peak(lambda: result.setdefault("out", step_fn()), *external)
        for record in (self.modules if k is None else [self.modules[k]]):
            record["peak_bytes"] = peak
            if self.budget.limited:
                record["budget_fraction"] = self.budget.fraction(peak)
        self.budget.check(peak, "the whole step" if k is None else f"module {k + 1}")
        return result["out"]

    def start_module_clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._phases_at_module_start = self.phases.snapshot()
        return time.perf_counter()

    def finish_module_clock(self, k: int, started: float) -> None:
        record = self.modules[k]
        record["time_s"] += time.perf_counter() - started
        spent, before = self.phases.since(self._phases_at_module_start), record.get("phases_s") or {}
        record["phases_s"] = {name: round(before.get(name, 0.0) + value, 3) for name, value in spent.items()}  # laps add up
        record["peak_rss_bytes"] = peak_rss_bytes()
        record["rss_bytes"] = rss_bytes()  # now, not the peak: the soak benchmark watches it for growth
        from edgetrgl.devices.footprint import current_footprint  # only here: `import edgetrgl` stays light

        record["anon_bytes"] = current_footprint().anon_bytes  # what a memory cgroup cannot reclaim, now
        record["open_files"] = open_file_count()
        if self.device.type == "cuda":
            record.update(cuda_peaks(self.device))

    @torch.no_grad()
    def accuracy(self, k: int, batches) -> float:
        """Test accuracy of module k's head on its inputs ``batches``."""
        stage, head = self.net.stages[k], self.net.heads[k]
        stage.eval(), head.eval()
        correct = total = 0
        with self.phases.phase("evaluate"):
            for x, y in batches:
                correct += count_correct(head(stage(x)), y)
                total += y.numel()
        return correct / max(total, 1)

    def log_epoch(self, k: int, epoch: int, lap: int, tally, started: float) -> None:
        steps = max(tally.steps, 1)
        record = {
            "event": "epoch", "lap": lap, "module": k + 1, "epoch": epoch + 1,
            "ce": tally.ce / steps, "transport": tally.transport / steps,
            "train_accuracy": tally.correct / max(tally.seen, 1),
            "tau": self.tau.tau_k(k), "lr": self.optimizers[k].param_groups[0]["lr"],
            "time_s": round(time.perf_counter() - started, 3),
        }
        self.writer.log(record)

    def log_module(self, k: int, lap: int) -> None:
        record = {"event": "module", "lap": lap, **self.modules[k]}
        acc = record["test_accuracy"]
        self.writer.log(record, echo=f"module {k + 1}/{self.net.num_modules} (lap {lap + 1}): "
                                     f"test accuracy {100 * acc:.2f}%  [{record['time_s']:.1f} s]")
