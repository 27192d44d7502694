"""``--freeze-modules N``: the first N modules keep their weights; only the rest train.

A frozen part has ``requires_grad=False`` and stays in eval mode even when a loop calls
``net.train()`` (its BatchNorm statistics must not move either), so its weights end the run
bit-identical. Per regime:

* sequential / multilap: the first N modules get no epochs; their heads are still evaluated and their
  outputs are computed once and cached for module N+1, as for any finished module;
* parallel: the first N modules only run forward (no loss backward, no optimizer step);
* e2e: the stem and the blocks of the first N modules of the ``--modules`` split (or
  ``--boundaries``) are frozen; the remaining blocks and the head train end to end.
"""

from __future__ import annotations

import types

from torch import nn

from edgetrgl.config import TrainConfig
from edgetrgl.errors import UserError
from edgetrgl.modular import ModularNet, split_blocks


def check_freeze(cfg: TrainConfig) -> None:
    """``freeze_modules`` must leave at least one module to train.

    Raises:
        UserError: N >= K (K after ``--modules auto`` was resolved).
    """
    n = cfg.freeze_modules
    if n == 0:
        return
    if not isinstance(cfg.modules, int):
        raise UserError("--freeze-modules needs a fixed --modules K, not 'auto'")
    k = len(cfg.boundaries) + 1 if cfg.boundaries else cfg.modules
    if n >= k:
        raise UserError(f"--freeze-modules {n} leaves nothing to train: the run has {k} module(s); choose 0..{k - 1}")


def freeze_prefix(net: ModularNet, cfg: TrainConfig) -> int:
    """Freeze the first ``cfg.freeze_modules`` modules of ``net`` in place; return how many parameters."""
    n = cfg.freeze_modules
    if n == 0:
        return 0
    check_freeze(cfg)
    if net.num_modules > 1:
        parts = [m for k in range(n) for m in (net.stages[k], net.heads[k])]
    else:  # one module holding every block: freeze the stem and the blocks of the first n modules of the split
        stage = net.stages[0]
        stop = split_blocks(len(stage.blocks), cfg.modules, cfg.boundaries)[n - 1][1]
        parts = [stage.stem, *stage.blocks[:stop]] if stage.stem is not None else list(stage.blocks[:stop])
    frozen = 0
    for part in parts:
        frozen += sum(p.numel() for p in part.parameters())
        freeze(part)
    return frozen


def freeze(module: nn.Module) -> None:
    """No gradients, and eval mode that a parent's ``train()`` cannot undo."""
    module.requires_grad_(False)
    module.eval()
    module.train = types.MethodType(_stay_in_eval, module)


def _stay_in_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)
