"""The Trainer of one rank: the single-process Trainer, with checkpoints cut by rank.

In the pipeline a rank owns some modules and saves only theirs; in data parallel every rank holds
the whole network and saves it. Either way a checkpoint is collective (see ``checkpoint.py``), and
the epoch records of every rank's modules reach rank 0's metrics file there, before rank 0 notes
how far its file goes. Signals are left to torchrun: on SIGTERM the workers end, and a restart
resumes from the last complete checkpoint (a mid-epoch stop would need every rank to agree on the batch).
"""

from __future__ import annotations

from typing import Any

from edgetrgl.distributed.checkpoint import save_distributed
from edgetrgl.distributed.env import DistEnv
from edgetrgl.distributed.link import Link, gather_to_main
from edgetrgl.training.trainer import Trainer


class DistributedTrainer(Trainer):
    """A :class:`Trainer` for one rank.

    Args:
        env: this rank's place in the process group.
        layout: the modules each rank trains (pipeline), or ``[range(K)]`` (data parallel: all).
        saved_cfg: the configuration as the user gave it (global batch), written into checkpoints;
            ``cfg`` is what this rank runs (its share of the batch in data parallel).
        Others: as for :class:`Trainer`.
    """

    def __init__(self, cfg, plan, net, train_set, test_set, writer, *, env: DistEnv, layout: list[range],
                 saved_cfg, run_dir=None) -> None:
        super().__init__(cfg, plan, net, train_set, test_set, writer, run_dir=run_dir)
        self.env, self.layout, self.saved_cfg = env, layout, saved_cfg
        self.owned = layout[env.rank] if len(layout) > 1 else layout[0]
        self.device = env.device
        self.serial = 0  # number of the last checkpoint written
        self._pending: list[dict] = []  # epoch records not yet on rank 0

    @property
    def is_pipeline(self) -> bool:
        return len(self.layout) > 1

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["config"] = self.saved_cfg.to_dict()
        state["serial"], state["rank"] = self.serial, self.env.rank
        if self.is_pipeline:  # a pipeline rank: its modules only
            keep = self._prefixes()
            state["net"] = {name: t for name, t in state["net"].items() if name.startswith(keep)}
            state["optimizers"] = [s if k in self.owned else None for k, s in enumerate(state["optimizers"])]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)  # the same state as one process's, phases included
        self.serial = state["serial"]

    def load_weights(self, state: dict[str, Any]) -> None:
        """This rank's part: its modules' weights and optimizers only."""
        missing, unexpected = self.net.load_state_dict(state["net"], strict=False)
        if unexpected or any(name.startswith(self._prefixes()) for name in missing):
            raise RuntimeError(f"rank {self.env.rank}: checkpoint part does not match its modules")
        for optimizer, saved in zip(self.optimizers, state["optimizers"]):
            if saved is not None:
                optimizer.load_state_dict(saved)

    def open_link(self, in_shape: tuple[int, ...]) -> Link:
        """The pipeline's traffic with the neighbouring ranks, for inputs of ``in_shape`` (no batch)."""
        return Link(self.env.rank, self.env.world_size, in_shape, self.device)

    def log_epoch(self, k: int, epoch: int, lap: int, tally, started: float) -> None:
        if not self.is_pipeline:  # every rank trains every module: rank 0's records speak for all
            return super().log_epoch(k, epoch, lap, tally, started)
        writer, self.writer = self.writer, _Collect(self._pending)
        try:
            super().log_epoch(k, epoch, lap, tally, started)
        finally:
            self.writer = writer

    def log_module(self, k: int, lap: int) -> None:
        if not self.is_pipeline:
            super().log_module(k, lap)
        # a pipeline rank's modules are logged by rank 0 once every rank's records have met (log_gathered)

    def log_gathered(self) -> None:
        """Rank 0 of a pipeline: log every module, in order, from the records gathered from the ranks."""
        for k in range(self.net.num_modules):
            super().log_module(k, 0)

    def checkpoint(self, **position: int) -> None:
        """Collective: rank 0 logs every rank's pending epoch records, then every rank writes its
        part and rank 0 commits (no part without a run folder)."""
        self.position.update(position)
        if self.is_pipeline:
            for record in sorted(gather_to_main(self._pending), key=lambda r: r["module"]):
                self.writer.log(record)
            self._pending.clear()
        if self.run_dir is None:
            return
        self.serial += 1
        info = {"regime": self.cfg.regime, "owned": [[r.start, r.stop] for r in self.layout]}
        save_distributed(self.run_dir, self.serial, self.state_dict(), info)

    def _prefixes(self) -> tuple[str, ...]:
        return tuple(f"stages.{k}." for k in self.owned) + tuple(f"heads.{k}." for k in self.owned)


class _Collect:
    """Stands in for the metrics writer while a pipeline rank builds an epoch record."""

    def __init__(self, into: list[dict]) -> None:
        self.into = into

    def log(self, record: dict, echo: str | None = None) -> None:
        self.into.append(record)
