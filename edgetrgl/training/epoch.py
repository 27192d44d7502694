"""The bookkeeping every regime's epoch shares, written once: resume mid-epoch, sums per module,
the finite-loss check, the multiplier update, progress, signals, the epoch record and checkpoint."""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Protocol

from edgetrgl._faults import crash_point
from edgetrgl.metrics import MetricsWriter
from edgetrgl.step import StepResult
from edgetrgl.training.phases import PhaseClock


@dataclass
class Tally:
    """One module's running sums over an epoch (saved in a checkpoint taken mid-epoch)."""

    ce: float = 0.0
    transport: float = 0.0
    correct: int = 0
    seen: int = 0
    steps: int = 0
    terms: dict[str, float] = field(default_factory=dict)  # the objective's named terms, summed

    def add(self, res: StepResult) -> float:
        ce = float(res.ce)  # the one host sync per step and module
        self.ce += ce
        self.transport += float(res.transport)
        for name, value in res.terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + float(value)
        self.correct += int(res.correct)
        self.seen += res.seen
        self.steps += 1
        return ce


class EpochOwner(Protocol):
    """What the epoch's bookkeeping reads and calls: the trainer's side of it."""

    position: dict[str, Any]
    writer: MetricsWriter
    phases: PhaseClock
    stop_requested: bool

    def check_finite(self, ce: float, k: int, epoch: int) -> None: ...
    def observe_loss(self, k: int, ce: float) -> None: ...
    def interrupt(self, **position: Any) -> None: ...
    def log_epoch(self, k: int, epoch: int, lap: int, tally: "Tally", started: float) -> None: ...
    def checkpoint(self, **position: Any) -> None: ...


StepFn = Callable[[Any, Any, int], list[StepResult]]  # (x, y, global step) -> one result per module


def run_epoch(trainer: EpochOwner, *, modules: list[int], epoch: int, batches: Iterable, step: StepFn, label: str,
              steps_per_epoch: int, where: dict[str, int] | None = None) -> list[Tally]:
    """Run one epoch of ``step`` over ``batches`` and do the bookkeeping around it.

    Args:
        trainer: the run.
        modules: the modules ``step`` trains (0-based), in the order of its results.
        epoch: 0-based epoch.
        batches: this epoch's batches, from the first (a resumed epoch skips those already done).
        step: trains on one batch; returns one :class:`StepResult` per module in ``modules``.
        label: progress-bar label.
        steps_per_epoch: batches in a full epoch.
        where: the rest of the position (``lap``, ``module``) a checkpoint records.

    Returns:
        The epoch's tallies, one per module.
    """
    where = where or {}
    start = trainer.position
    resuming = epoch == start["epoch"] and all(start.get(key) == value for key, value in where.items())
    skip = start["batch"] if resuming else 0
    saved = start.get("sums") if skip else None
    tallies = [Tally(**s) for s in saved] if saved else [Tally() for _ in modules]
    started = time.perf_counter()
    clock = trainer.phases
    with trainer.writer.progress(label, steps_per_epoch - skip) as bar:
        waited = time.perf_counter()
        for batch, (x, y) in enumerate(itertools.islice(batches, skip, None), start=skip):
            stepping = time.perf_counter()
            clock.add("data", stepping - waited)
            results = step(x, y, epoch * steps_per_epoch + batch)
            for k, tally, res in zip(modules, tallies, results):
                ce = tally.add(res)  # the step's one host sync: its time ends here
                trainer.check_finite(ce, k, epoch)
                trainer.observe_loss(k, ce)
            waited = time.perf_counter()
            clock.add("steps", waited - stepping)
            bar.advance(f"ce {ce:.3f}")
            crash_point("step")
            if trainer.stop_requested:
                trainer.interrupt(**where, epoch=epoch, batch=batch + 1, sums=[asdict(t) for t in tallies])
    for k, tally in zip(modules, tallies):
        trainer.log_epoch(k, epoch, where.get("lap", 0), tally, started)
    trainer.checkpoint(**where, epoch=epoch + 1, batch=0, sums=None)
    return tallies
