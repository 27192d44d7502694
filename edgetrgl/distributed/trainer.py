"""The Trainer of one rank: the single-process Trainer, with checkpoints cut by rank.

In the pipeline a rank owns some modules and saves only theirs; in data parallel every rank holds
the whole network and saves it. Either way a checkpoint is collective (see ``checkpoint.py``).
Signals are left to torchrun: on SIGTERM the workers end, and a restart resumes from the last
complete checkpoint (a mid-epoch stop would need every rank to agree on the batch).
"""

from __future__ import annotations

from typing import Any

import torch

from edgetrgl.config import TrainConfig, format_bytes
from edgetrgl.distributed.checkpoint import save_distributed
from edgetrgl.distributed.env import DistEnv
from edgetrgl.training.trainer import BudgetExceeded, Trainer


class DistributedTrainer(Trainer):
    """A :class:`Trainer` for one rank.

    Args:
        env: this rank's place in the process group.
        layout: the modules each rank trains (pipeline), or ``[range(K)]`` (data parallel: all).
        saved_cfg: the configuration as the user gave it (global batch), written into checkpoints;
            ``cfg`` is what this rank runs (its share of the batch in data parallel).
        Others: as for :class:`Trainer`.
    """

    def __init__(self, cfg: TrainConfig, net, train_set, test_set, writer, *, env: DistEnv, layout: list[range],
                 saved_cfg: TrainConfig, cache_dir=None, run_dir=None) -> None:
        super().__init__(cfg, net, train_set, test_set, writer, cache_dir=cache_dir, run_dir=run_dir)
        self.env, self.layout, self.saved_cfg = env, layout, saved_cfg
        self.owned = layout[env.rank] if len(layout) > 1 else layout[0]
        self.device = env.device
        self.serial = 0  # number of the last checkpoint written

    def train(self) -> list[dict[str, Any]]:
        if self.cfg.regime != "pipeline":
            return super().train()
        from edgetrgl.distributed import pipeline  # the loop uses this class's helpers

        self._limit_cuda_memory()
        try:
            pipeline.run(self)
        except torch.OutOfMemoryError:
            budget = f" within the budget of {format_bytes(self.cfg.budget)}" if self.cfg.budget else ""
            raise BudgetExceeded(f"out of memory on {self.device}{budget} (rank {self.env.rank}): use more ranks "
                                 f"or --modules, or a smaller --micro-batch / --batch-size") from None
        return self.modules

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["config"] = self.saved_cfg.to_dict()
        state["serial"], state["rank"] = self.serial, self.env.rank
        if len(self.owned) < self.net.num_modules:  # a pipeline rank: its modules only
            keep = tuple(f"stages.{k}." for k in self.owned) + tuple(f"heads.{k}." for k in self.owned)
            state["net"] = {name: t for name, t in state["net"].items() if name.startswith(keep)}
            state["optimizers"] = [s if k in self.owned else None for k, s in enumerate(state["optimizers"])]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing, unexpected = self.net.load_state_dict(state["net"], strict=False)
        owned_prefixes = tuple(f"stages.{k}." for k in self.owned) + tuple(f"heads.{k}." for k in self.owned)
        if unexpected or any(name.startswith(owned_prefixes) for name in missing):
            raise RuntimeError(f"rank {self.env.rank}: checkpoint part does not match its modules")
        for optimizer, saved in zip(self.optimizers, state["optimizers"]):
            if saved is not None:
                optimizer.load_state_dict(saved)
        self.tau.load_state_dict(state["tau"])
        self.modules = state["modules"]
        self.position = dict(state["position"])
        self.serial = state["serial"]
        torch.set_rng_state(state["rng"]["torch"])

    def checkpoint(self, **position: int) -> None:
        """Collective: every rank writes its part, rank 0 commits (no-op without a run folder)."""
        self.position.update(position)
        if self.run_dir is None:
            return
        self.serial += 1
        info = {"regime": self.cfg.regime, "owned": [[r.start, r.stop] for r in self.layout]}
        save_distributed(self.run_dir, self.serial, self.state_dict(), info)

    def _install_signal_handlers(self) -> dict:
        return {}  # torchrun owns SIGINT/SIGTERM (see the module docstring)
