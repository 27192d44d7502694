"""On-device fine-tuning: ``--init-from FILE|RUN_DIR`` and ``--freeze-modules N``.

The usual on-device job adapts a network trained elsewhere to local data under a small budget:
start from its weights (a finished edgetrgl run, or a torchvision ResNet-18/50 checkpoint) and
train only the later modules.

Both steps are split so that a bad file fails before anything on disk changes:
:func:`plan_finetune` reads and checks everything against the network the run will build;
:func:`apply_finetune` loads the weights into the run's network and freezes its prefix.
"""

from __future__ import annotations

from edgetrgl.config import TrainConfig
from edgetrgl.finetune.freeze import check_freeze, freeze, freeze_prefix
from edgetrgl.step import frozen_step
from edgetrgl.finetune.mapping import InitPlan, plan_init
from edgetrgl.finetune.sources import InitSource, read_source


def plan_finetune(cfg: TrainConfig, net, model_name: str) -> InitPlan | None:
    """Check ``freeze_modules`` and map ``init_from`` onto the run's network; change nothing.

    Args:
        cfg: the run's configuration with the plan's modules (``modules``, ``boundaries`` resolved).
        net: the network the plan built (read, never modified: the weights load in :func:`apply_finetune`).
        model_name: the registry name, or your own network's name (the source's must match it).

    Returns:
        The weights to load (None without ``init_from``).

    Raises:
        UserError: a bad freeze count, an unreadable file, or weights that do not match the model
            (the message names the first mismatching key).
    """
    check_freeze(cfg)
    if not cfg.init_from:
        return None
    return plan_init(net, read_source(cfg.init_from), model_name)


def apply_finetune(net, cfg: TrainConfig, init: InitPlan | None) -> dict | None:
    """Load ``init`` into ``net`` (a fresh run) and freeze its first ``cfg.freeze_modules`` modules.

    Returns:
        The init report for ``summary.json`` (None without ``init``).
    """
    if init is not None:
        net.load_state_dict(init.state)
    freeze_prefix(net, cfg)
    return init.report() if init is not None else None


__all__ = ["InitPlan", "InitSource", "apply_finetune", "check_freeze", "freeze", "freeze_prefix", "frozen_step",
           "plan_finetune", "plan_init", "read_source"]
