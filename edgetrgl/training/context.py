"""What a training regime may use: the :class:`RegimeContext`, and the :class:`Regime` entry itself.

A regime is one function, ``run(ctx)``, in one file under ``regimes/``. It decides the order of the
work (which modules train on which batches, when a module is finished) and nothing else: every
step goes through :meth:`RegimeContext.train_step` (learning rate, freezing for fine-tuning,
precision, checkpointing inside blocks, the measured step and the budget), every epoch through
:meth:`~RegimeContext.run_epoch` (resume mid-epoch, sums, finite-loss check, signals, the epoch
record and checkpoint) and every finished module through :meth:`~RegimeContext.finish_modules`
(BatchNorm recalibration, evaluation, the module record and its log line). So a new regime cannot
forget freezing, recalibration or the records.

This module sits below both the trainer (which implements the context) and the regimes (which use
it); it imports neither.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import torch

from edgetrgl.config import TrainConfig
from edgetrgl.modular import ModularNet
from edgetrgl.planning.run_plan import RunPlan
from edgetrgl.planning.traits import RegimeTraits
from edgetrgl.step import StepResult
from edgetrgl.training.epoch import StepFn, Tally

__all__ = ["Regime", "RegimeContext", "RegimeTraits", "StepFn"]

class RegimeContext(Protocol):
    """Everything a regime's loop may read or call; the trainer implements it.

    Read-only facts:
        cfg: this process's configuration (a data-parallel rank's batch is its share).
        plan: what was resolved (device, cache, offload, micro-batch, precision, checkpointing).
        net: the network split into modules; ``net.stages[k]``, ``net.heads[k]``.
        device: where steps run.
        train_set, test_set: the datasets.
        val_set: the validation part held out of the training set, or None (``--val-fraction 0``).
        owned: the modules this process trains (all of them, except on a pipeline rank).
        optimizers: one per module (a regime moves their state with its module).
        position: where to start: ``lap``, ``module``, ``epoch``, ``batch`` (a resumed run).
        steps_per_epoch: batches in one epoch.
        run_dir: the run folder (None: a run that writes nothing).

    Set by a regime, read back into checkpoints and the summary:
        offloader: the object that keeps finished modules off the device (its ``stage_state(k)``).
        data_mode: how module inputs are served (``dataset``, or the cache's description).
    """

    cfg: TrainConfig
    plan: RunPlan
    net: ModularNet
    device: torch.device
    train_set: Any
    test_set: Any
    val_set: Any
    owned: range
    optimizers: list[torch.optim.Optimizer]
    position: dict[str, Any]
    run_dir: Path | None
    offloader: Any
    data_mode: str

    @property
    def steps_per_epoch(self) -> int: ...

    def epochs(self, k: int) -> int:
        """Epochs module k trains in this regime: 0 for a module frozen for fine-tuning."""

    def loader(self, epoch: int) -> Iterable:
        """The training set's batches for ``epoch``, in the run's order and augmentation."""

    def train_step(self, modules: Sequence[int], x: torch.Tensor, y: torch.Tensor, global_step: int, *,
                   image: torch.Tensor | None = None) -> tuple[torch.Tensor, list[StepResult]]:
        """One batch through ``modules`` in order, each stepping on its own loss (a frozen one only
        runs forward) and handing its output on detached. Returns the last output and one result per module."""

    def run_epoch(self, modules: Sequence[int], epoch: int, batches: Iterable, step: StepFn, *, label: str,
                  where: Mapping[str, int] | None = None) -> list[Tally]:
        """One epoch of ``step`` over ``batches``, with every record, check and checkpoint around it."""

    def start_modules(self) -> None:
        """The work on the next modules starts: their clock and peak counters."""

    def finish_modules(self, modules: Sequence[int], *, lap: int, evaluate: Callable[[], Mapping[int, float]],
                       validate: Callable[[], Mapping[int, float]] | None = None,
                       recalibrate_on: Callable[[], Iterable] | None = None,
                       record: Callable[[], Mapping[str, Any]] | None = None) -> None:
        """``modules`` have trained: recalibrate their BatchNorms (``--recalibrate-bn``, over the
        batches ``recalibrate_on()`` gives, the first module's inputs), take their test accuracy
        (``evaluate()``) and, where there is a ``val_set``, their validation accuracy (``validate()``,
        called after ``evaluate()``; required then), add ``record()`` to their records, and log them."""

    def checkpoint(self, **position: int) -> None:
        """Record the next position and write a checkpoint."""

    def phase(self, name: str) -> AbstractContextManager[None]:
        """Count the time inside as ``name`` (see :mod:`edgetrgl.training.phases`)."""

    def warn(self, message: str) -> None:
        """A warning on the console and in the metrics."""

    def restart_multiplier(self, k: int) -> None:
        """The ``multiplier`` tau schedule of module k starts afresh (each lap, as the authors do)."""

    def open_link(self, in_shape: tuple[int, ...]) -> Any:
        """The pipeline's traffic with the neighbouring ranks (only under torchrun)."""


@dataclass(frozen=True)
class Regime:
    """A training regime: its name, its loop, its traits and a one-line help."""

    name: str
    run: Callable[[RegimeContext], None]
    traits: RegimeTraits
    help: str
    epochs_for: Callable[[TrainConfig, int], int] | None = None  # (cfg, k) -> epochs of module k; default cfg.epochs
    epochs_help: str = "in total"  # what --epochs counts here (its help groups the regimes by it)

    def module_epochs(self, cfg: TrainConfig, k: int) -> int:
        return self.epochs_for(cfg, k) if self.epochs_for is not None else cfg.epochs
