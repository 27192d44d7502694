"""Where a run's wall time goes: seconds per phase, per module and for the whole run.

The phases are coarse on purpose (a clock read per batch and per pass, never a device sync of its
own): the per-step host sync that reads the loss already bounds each step, so on CUDA ``steps`` is
the time until the step's result was known and ``data`` the time spent waiting for the next batch.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

PHASES = {
    "steps": "training steps: forward, local loss, backward, optimizer",
    "data": "waiting for the next training batch: loading, augmentation, cache reads, a recomputed prefix",
    "evaluate": "test accuracy of the heads",
    "recalibrate_bn": "--recalibrate-bn: one forward pass over the training inputs, for BatchNorm's statistics",
    "cache_fill": "writing a finished module's outputs to the activation cache (train and test sets)",
    "checkpoint": "writing checkpoints",
}


class PhaseClock:
    """Accumulates wall time per phase. ``snapshot()`` and ``since()`` give one module's share."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(PHASES, 0.0)

    def add(self, phase: str, seconds: float) -> None:
        self.totals[phase] += seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)

    def since(self, snapshot: dict[str, float]) -> dict[str, float]:
        """Seconds per phase since ``snapshot`` (rounded to the millisecond)."""
        return {name: round(self.totals[name] - snapshot.get(name, 0.0), 3) for name in PHASES}

    def report(self, wall_time_s: float) -> dict[str, float]:
        """The run's totals, with ``other`` (planning the cache, moving modules, logging) as the rest."""
        totals = {name: round(value, 3) for name, value in self.totals.items()}
        totals["other"] = round(max(0.0, wall_time_s - sum(self.totals.values())), 3)
        return totals

    def restore(self, totals: dict[str, float] | None) -> None:
        """Continue a resumed run's totals."""
        for name, value in (totals or {}).items():
            if name in self.totals:
                self.totals[name] = float(value)


def describe(phases: dict[str, float]) -> str:
    """``"steps 71%, data 9%, ..."`` in descending order, for the console."""
    total = sum(phases.values()) or 1.0
    parts = sorted(phases.items(), key=lambda item: -item[1])
    return ", ".join(f"{name.replace('_', ' ')} {100 * value / total:.0f}%" for name, value in parts if value > 0)
