"""The Trainer: state of one run (modules, heads, optimizers, tau multipliers) and its loops.

The loops themselves live one per file (``sequential.py``, ``parallel.py``, ``e2e.py``) and read top
to bottom: forward, local loss, backward, step, detach, cache write.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from edgetrgl.config import TrainConfig, format_bytes
from edgetrgl.errors import UserError
from edgetrgl.losses import TauSchedule
from edgetrgl.memory.tensor import cuda_peaks, track_peak
from edgetrgl.modular import ModularNet
from edgetrgl.report import MetricsWriter
from edgetrgl.train.common import NonFiniteLoss, count_correct, make_optimizer, peak_rss_bytes, resolve_device


class BudgetExceeded(UserError):
    """The run needs more memory than ``--budget`` allows."""


class Trainer:
    """Holds everything a run needs and dispatches to the regime's loop.

    Args:
        cfg: the run's configuration.
        net: the network split into modules (for ``e2e``: one module).
        train_set, test_set: datasets (see :mod:`edgetrgl.data`).
        writer: the metrics writer (console + metrics.jsonl).
        cache_dir: where disk caches go (a run folder's ``cache/``).
    """

    def __init__(self, cfg: TrainConfig, net: ModularNet, train_set, test_set, writer: MetricsWriter,
                 cache_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.net = net
        self.train_set, self.test_set = train_set, test_set
        self.writer = writer
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = resolve_device(cfg.device)
        K = net.num_modules
        self.tau = TauSchedule(cfg.tau_schedule, cfg.tau, K, method=cfg.method if cfg.regime != "e2e" else "vangl",
                               step=cfg.multiplier_step, every=cfg.multiplier_every)
        self.optimizers = [make_optimizer(list(net.stages[k].parameters()) + list(net.heads[k].parameters()), cfg)
                           for k in range(K)]
        self.modules: list[dict[str, Any]] = [
            {"module": k + 1, "blocks": list(net.block_ranges[k]), "test_accuracy": None, "time_s": 0.0,
             "epochs": 0, "peak_bytes": None, "peak_by_category": {}, "peak_rss_bytes": None}
            for k in range(K)
        ]
        self.data_mode = "dataset"  # the sequential loop replaces it with its cache description

    def train(self) -> list[dict[str, Any]]:
        """Run the configured regime; return the per-module records."""
        from edgetrgl.train import e2e, parallel, sequential  # the loops import Trainer's helpers

        loop = {"e2e": e2e.run, "parallel": parallel.run, "sequential": sequential.run, "multilap": sequential.run}
        self._limit_cuda_memory()
        try:
            loop[self.cfg.regime](self)
        except torch.OutOfMemoryError:
            budget = f" within the budget of {format_bytes(self.cfg.budget)}" if self.cfg.budget else ""
            raise BudgetExceeded(f"out of memory on {self.device}{budget}: use more --modules, --split balanced "
                                 f"or a smaller --micro-batch / --batch-size") from None
        return self.modules

    def _limit_cuda_memory(self) -> None:
        """On CUDA the budget is enforced by the caching allocator: it raises OOM past the fraction."""
        if self.cfg.budget is None or self.device.type != "cuda":
            return
        total = torch.cuda.get_device_properties(self.device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, self.cfg.budget / total), self.device)

    # ---- helpers the loops share ---------------------------------------------------------------
    def epochs_for(self, k: int) -> int:
        """Epochs for module k: sequential grows with depth (base + k * step); multilap is per lap."""
        if self.cfg.regime == "sequential":
            return self.cfg.epochs + k * self.cfg.epochs_step
        return self.cfg.epochs

    def check_finite(self, ce: float, k: int, epoch: int) -> None:
        if ce != ce or ce in (float("inf"), float("-inf")):
            raise NonFiniteLoss(f"loss became {ce} in module {k + 1}, epoch {epoch + 1}: lower --lr or raise --tau")

    def measured_step(self, k: int, step_fn, *external) -> Any:
        """Run the first step of a module under the tensor-level tracker and record its peak.

        On the CPU this is where the budget is enforced: the step's tensors must fit in it.
        """
        result = {}
        peak = track_peak(lambda: result.setdefault("out", step_fn()), *external)
        record = self.modules[k]
        record["peak_bytes"] = peak.peak_bytes
        record["peak_by_category"] = peak.by_category
        budget = self.cfg.budget
        if budget is not None:
            record["budget_fraction"] = peak.peak_bytes / budget
            if peak.peak_bytes > budget:
                raise BudgetExceeded(f"module {k + 1} needs {format_bytes(peak.peak_bytes)} of tensors, over the budget of "
                                     f"{format_bytes(budget)} ({budget / 1e9:.3g} GB): raise --budget, or use more "
                                     f"--modules, --split balanced or a smaller --micro-batch")
        return result["out"]

    def start_module_clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return time.perf_counter()

    def finish_module_clock(self, k: int, started: float) -> None:
        record = self.modules[k]
        record["time_s"] += time.perf_counter() - started
        record["peak_rss_bytes"] = peak_rss_bytes()
        if self.device.type == "cuda":
            record.update(cuda_peaks(self.device))

    @torch.no_grad()
    def accuracy(self, k: int, batches) -> float:
        """Test accuracy of module k's head on its inputs ``batches``."""
        stage, head = self.net.stages[k], self.net.heads[k]
        stage.eval(), head.eval()
        correct = total = 0
        for x, y in batches:
            correct += count_correct(head(stage(x)), y)
            total += y.numel()
        return correct / max(total, 1)

    def log_epoch(self, k: int, epoch: int, lap: int, sums: dict[str, float], steps: int, started: float) -> None:
        record = {
            "event": "epoch", "lap": lap, "module": k + 1, "epoch": epoch + 1,
            "ce": sums["ce"] / max(steps, 1), "transport": sums["transport"] / max(steps, 1),
            "train_accuracy": sums["correct"] / max(sums["seen"], 1),
            "tau": self.tau.tau_k(k), "lr": self.optimizers[k].param_groups[0]["lr"],
            "time_s": round(time.perf_counter() - started, 3),
        }
        self.writer.log(record)

    def log_module(self, k: int, lap: int) -> None:
        record = {"event": "module", "lap": lap, **self.modules[k]}
        acc = record["test_accuracy"]
        self.writer.log(record, echo=f"module {k + 1}/{self.net.num_modules} (lap {lap + 1}): "
                                     f"test accuracy {100 * acc:.2f}%  [{record['time_s']:.1f} s]")
