"""The Trainer: the state of one run (modules, heads, optimizers, tau multipliers) and the
:class:`~edgetrgl.training.context.RegimeContext` its regime's loop runs against.

The loops live one per file in ``regimes/`` and read top to bottom; what every loop must do
(learning rates, freezing, the measured step, records, recalibration, checkpoints, signals) is
here, once. The trainer reads the run's :class:`RunPlan`; it decides nothing itself.
"""

from __future__ import annotations

import signal
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

import edgetrgl.stop as stop
from edgetrgl.config import TrainConfig
from edgetrgl.data import make_loader
from edgetrgl.errors import UserError
from edgetrgl.losses import TauSchedule
from edgetrgl.memory.process import open_file_count, peak_rss_bytes, rss_bytes
from edgetrgl.memory.tensor import cuda_peaks, track_live_peak
from edgetrgl.metrics import MetricsWriter
from edgetrgl.modular import ModularNet
from edgetrgl.planning.budget import BudgetExceeded
from edgetrgl.planning.run_plan import RunPlan
from edgetrgl.step import StepResult, frozen_step, local_step, make_optimizer, set_lr
from edgetrgl.training.batchnorm import recalibrate_batchnorm
from edgetrgl.training.checkpoint import save_checkpoint
from edgetrgl.training.epoch import StepFn, Tally, run_epoch
from edgetrgl.training.phases import PhaseClock
from edgetrgl.stop import Interrupted
from edgetrgl.training.regimes import get_regime

__all__ = ["BudgetExceeded", "Interrupted", "NonFiniteLoss", "Trainer"]


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite: training stops rather than writing garbage."""


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
        self.val_set = None  # the validation part held out of the training set (set by the run body), or None
        self.writer = writer
        self.device = plan.torch_device
        self.budget = plan.budget_policy
        K = net.num_modules
        method = "trgl" if plan.transport else "vangl"  # the plan decided the transport term (plan_transport)
        # what summary.json records: the objective and whether the transport term was on
        self.objective = {"method": cfg.method, "transport": method == "trgl", "transport_option": cfg.transport}
        self.tau = TauSchedule(cfg.tau_schedule, cfg.tau, K, transport=method == "trgl", step=cfg.multiplier_step,
                               every=cfg.multiplier_every)
        self.optimizers = [make_optimizer(cfg.optimizer, list(net.stages[k].parameters()) + list(net.heads[k].parameters()),
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
        self.owned = range(K)  # a pipeline rank trains fewer (DistributedTrainer)
        self.offloader = None  # set by the sequential loop: frozen modules may live on disk
        self.extra: dict[str, Any] = {}  # plan and cache choice, carried into checkpoints
        self.phases = PhaseClock()  # where the wall time goes (metrics.jsonl, summary.json)
        self._phases_at_module_start = self.phases.snapshot()
        self._module_started = time.perf_counter()
        self.started = time.perf_counter()

    def train(self) -> list[dict[str, Any]]:
        """Run the planned regime; return the per-module records."""
        self.budget.limit_cuda(self.device)
        previous = stop.install()  # the CLI installed them at its first line; the Python API here, for the run
        try:
            self.regime.run(self)  # the loop sees the RegimeContext's members only
        except torch.OutOfMemoryError:
            raise self.budget.out_of_memory(self.device) from None
        finally:
            if previous:
                stop.restore(previous)
                stop.reset()
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
        """Record the next position and write a checkpoint (atomically) if the run has a folder; then,
        if a stop was requested (SIGTERM, SIGINT, SIGHUP), stop here: nothing is lost."""
        self.position.update(position)
        if self.run_dir is not None:
            with self.phases.phase("checkpoint"):
                self.writer.sync()  # the records the checkpoint counts (metrics_bytes) reach the disk first
                save_checkpoint(self.run_dir, self.state_dict())
        if self.stop_requested:
            name = signal.Signals(stop.requested()).name
            where = f"; resume with: edgetrgl train --resume {self.run_dir}" if self.run_dir else ""
            raise Interrupted(f"{name} received: stopped after the current step{where}", stop.requested())

    @property
    def stop_requested(self) -> bool:
        return stop.requested() is not None

    def interrupt(self, **position: int) -> None:
        """Called by the epoch loop between steps after a signal: checkpoint, then stop."""
        self.checkpoint(**position)

    # ---- the RegimeContext: what the loops use ------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_set) // self.cfg.batch_size)

    def frozen(self, k: int) -> bool:
        """Is module k kept as loaded (``--freeze-modules``)? e2e's one module never is: its frozen
        prefix is blocks inside it, which ``requires_grad`` already keeps out of the step."""
        return self.regime.traits.modular and k < self.cfg.freeze_modules

    def epochs(self, k: int) -> int:
        """Epochs for module k, as the regime says (sequential: base + k * step); 0 for a module frozen
        for fine-tuning (it is evaluated and cached, not trained)."""
        return 0 if self.frozen(k) else self.regime.module_epochs(self.cfg, k)

    def loader(self, epoch: int) -> Iterable:
        return make_loader(self.train_set, self.cfg.batch_size, shuffle=True, augment=self.cfg.augment,
                           seed=self.cfg.seed, epoch=epoch)

    def train_step(self, modules: Sequence[int], x: torch.Tensor, y: torch.Tensor, global_step: int, *,
                   image: torch.Tensor | None = None, keep_output: bool = False) -> tuple[torch.Tensor | None, list[StepResult]]:
        """One batch through ``modules`` in order; each steps on its own loss (a frozen one runs
        forward only) and hands its output on detached, so no gradient crosses a module boundary.
        The last module's output is returned only with ``keep_output`` (the pipeline sends it on).

        The regime's second step (see :meth:`measure_at`) is measured tensor by tensor with every
        module of the step resident; on the CPU that is where the budget is enforced.
        """
        same = image is x  # the parallel regime's InfoPro reads the batch itself: one copy on the device
        x, y = x.to(self.device), y.to(self.device)
        image = x if same else image.to(self.device) if image is not None else None
        plan, spe = self.plan, self.steps_per_epoch

        def step(h=x):
            results = []
            for k in modules:
                set_lr(self.optimizers[k], self.cfg.lr_schedule, self.cfg.lr, global_step,
                       self.regime.module_epochs(self.cfg, k) * spe)
                parts = (self.net.stages[k], self.net.heads[k], self.optimizers[k], h, y, self.tau.weights(k),
                         self.cfg.label_smoothing, plan.micro_batch)
                if self.frozen(k):
                    h, res = frozen_step(*parts)
                else:
                    h, res = local_step(*parts, checkpoint_blocks=plan.checkpoint_blocks, precision=plan.precision,
                                        image=image, keep_output=keep_output or k != modules[-1])
                results.append(res)
            return h, results

        if global_step != self.measure_at(self.regime.module_epochs(self.cfg, modules[0]) * spe):
            return step()
        resident = [part for k in modules for part in (self.net.stages[k], self.net.heads[k], self.optimizers[k])]
        resident += [x, y] + ([image] if image is not None and image is not x else [])
        out = {}
        peak = track_live_peak(lambda: out.setdefault("step", step()), *resident)
        for k in modules:
            self.modules[k]["peak_bytes"] = peak
            if self.budget.limited:
                self.modules[k]["budget_fraction"] = self.budget.fraction(peak)
        self.budget.check(peak, f"module {modules[0] + 1}" if len(modules) == 1 else "the whole step")
        return out["step"]

    @staticmethod
    def measure_at(total_steps: int) -> int:
        """The step whose memory is measured: the second, when gradients and momentum already exist
        (the steady state the planner estimates), or the only one."""
        return 1 if total_steps > 1 else 0

    def run_epoch(self, modules: Sequence[int], epoch: int, batches: Iterable, step: StepFn, *, label: str,
                  where: Mapping[str, int] | None = None) -> list[Tally]:
        return run_epoch(self, modules=list(modules), epoch=epoch, batches=batches, step=step, label=label,
                         steps_per_epoch=self.steps_per_epoch, where=dict(where or {}))

    def start_modules(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._phases_at_module_start = self.phases.snapshot()
        self._module_started = time.perf_counter()

    def finish_modules(self, modules: Sequence[int], *, lap: int, evaluate: Callable[[], Mapping[int, float]],
                       validate: Callable[[], Mapping[int, float]] | None = None,
                       recalibrate_on: Callable[[], Iterable] | None = None,
                       record: Callable[[], Mapping[str, Any]] | None = None) -> None:
        """See :meth:`RegimeContext.finish_modules`. The time and peaks since :meth:`start_modules`
        go to the last of ``modules`` (they trained together); a module's epochs add up over laps."""
        trained = [k for k in modules if not self.frozen(k)]
        if self.cfg.recalibrate_bn and trained and recalibrate_on is not None:
            with self.phases.phase("recalibrate_bn"):  # frozen parts keep theirs (see recalibrate_batchnorm)
                recalibrate_batchnorm([(self.net.stages[k], self.net.heads[k]) for k in modules], recalibrate_on(),
                                      self.device)
        for k in modules:
            self.modules[k]["epochs"] += self.epochs(k)
        accuracies = evaluate()
        for k in modules:
            self.modules[k]["test_accuracy"] = accuracies[k]
        if self.val_set is not None:
            if validate is None:
                raise RuntimeError(f"the {self.regime.name} regime scores no validation split")
            scores = validate()  # timed by the regime, as evaluate() is
            for k in modules:
                self.modules[k]["val_accuracy"] = scores[k]
        self._finish_clock(modules[-1])
        extra = dict(record()) if record is not None else {}
        for k in modules:
            self.modules[k].update(extra)
            self.log_module(k, lap)

    def phase(self, name: str) -> AbstractContextManager[None]:
        return self.phases.phase(name)

    def warn(self, message: str) -> None:
        self.writer.warn(message)

    def restart_multiplier(self, k: int) -> None:
        self.tau.restart(k)

    def open_link(self, in_shape: tuple[int, ...]) -> Any:
        raise UserError("the pipeline regime runs one process per rank: start it with torchrun, e.g. "
                        "torchrun --nproc-per-node 2 -m edgetrgl train --regime pipeline")

    # ---- what run_epoch calls back --------------------------------------------------------------
    def check_finite(self, ce: float, k: int, epoch: int) -> None:
        if ce != ce or ce in (float("inf"), float("-inf")):
            raise NonFiniteLoss(f"loss became {ce} in module {k + 1}, epoch {epoch + 1}: lower --lr or raise --tau")

    def observe_loss(self, k: int, ce: float) -> None:
        self.tau.observe(k, ce)  # the multiplier schedule grows with the loss

    def log_epoch(self, k: int, epoch: int, lap: int, tally, started: float) -> None:
        steps = max(tally.steps, 1)
        record = {
            "event": "epoch", "lap": lap, "module": k + 1, "epoch": epoch + 1,
            "loss": tally.ce / steps,  # the objective's loss, without the transport term
            "ce": tally.terms.get("ce", tally.ce) / steps, "transport": tally.transport / steps,
            "terms": {name: value / steps for name, value in tally.terms.items()},
            "train_accuracy": tally.correct / max(tally.seen, 1),
            "tau": self.tau.tau_k(k), "lr": self.optimizers[k].param_groups[0]["lr"],
            "time_s": round(time.perf_counter() - started, 3),
        }
        self.writer.log(record)

    # ---- records --------------------------------------------------------------------------------
    def _finish_clock(self, k: int) -> None:
        record = self.modules[k]
        record["time_s"] += time.perf_counter() - self._module_started
        spent, before = self.phases.since(self._phases_at_module_start), record.get("phases_s") or {}
        record["phases_s"] = {name: round(before.get(name, 0.0) + value, 3) for name, value in spent.items()}  # laps add up
        record["peak_rss_bytes"] = peak_rss_bytes()
        record["rss_bytes"] = rss_bytes()  # now, not the peak: the soak benchmark watches it for growth
        from edgetrgl.devices.footprint import current_footprint  # only here: `import edgetrgl` stays light

        record["anon_bytes"] = current_footprint().anon_bytes  # what a memory cgroup cannot reclaim, now
        record["open_files"] = open_file_count()
        if self.device.type == "cuda":
            record.update(cuda_peaks(self.device))

    def log_module(self, k: int, lap: int) -> None:
        record = {"event": "module", "lap": lap, **self.modules[k]}
        acc, val = record["test_accuracy"], record.get("val_accuracy")
        shown = f"  validation {100 * val:.2f}%" if val is not None else ""
        self.writer.log(record, echo=f"module {k + 1}/{self.net.num_modules} (lap {lap + 1}): "
                                     f"test accuracy {100 * acc:.2f}%{shown}  [{record['time_s']:.1f} s]")
