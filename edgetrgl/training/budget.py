"""Apply ``--budget``, ``--modules auto`` and ``--split balanced`` before a run starts."""

from __future__ import annotations

import copy
import dataclasses

import torch

from edgetrgl.config import TrainConfig, format_bytes
from edgetrgl.errors import UserError
from edgetrgl.memory.estimate import estimate_parallel
from edgetrgl.memory.planner import Plan, plan_modules
from edgetrgl.models import BlockNet, create_model
from edgetrgl.modular import ModularNet, build_modular


def plan_run(cfg: TrainConfig, spec, model: BlockNet | None = None) -> tuple[TrainConfig, Plan | None]:
    """Return the config to train with (boundaries, K and micro-batch filled in) and the plan.

    Sequential regimes get a plan whenever a budget, ``--modules auto`` or ``--split balanced`` asks
    for one. For ``e2e`` and ``parallel`` a budget is only checked: they cannot shrink below it.

    Raises:
        UserError: nothing fits the budget (the message names the smallest budget that would).
    """
    sequential = cfg.regime in ("sequential", "multilap")
    if cfg.modules == "auto" and not sequential:
        raise UserError("--modules auto is for the sequential and multilap regimes")
    wants_plan = cfg.budget is not None or cfg.split == "balanced" or cfg.modules == "auto"
    if not wants_plan:
        return cfg, None
    batch_shape = (cfg.micro_batch or cfg.batch_size, *spec.input_shape)
    sample = (2, *spec.input_shape)

    def blocknet() -> BlockNet:
        if model is not None:
            return copy.deepcopy(model)  # the estimator swaps its tensors for fake ones
        return create_model(cfg.model, in_channels=spec.in_channels, num_classes=spec.num_classes,
                            image_size=spec.image_size, **cfg.model_options)

    def build(k: int, bounds: list[int] | None) -> ModularNet:
        return build_modular(blocknet(), k, spec.num_classes, torch.zeros(sample), boundaries=bounds, head_style=cfg.head)

    transport = cfg.method == "trgl"
    if not sequential:
        k = 1 if cfg.regime == "e2e" else cfg.modules
        peak = estimate_parallel(lambda: build(k, None if cfg.regime == "e2e" else cfg.boundaries), batch_shape,
                                 spec.num_classes, transport and cfg.regime != "e2e").peak_bytes
        if peak > cfg.budget:
            raise UserError(f"the {cfg.regime} regime needs about {format_bytes(peak)} ({peak / 1e9:.3g} GB) for one "
                            f"step, over the budget of {format_bytes(cfg.budget)}: use --regime sequential")
        return cfg, None
    num_blocks = len(model.blocks) if model is not None else len(blocknet().blocks)
    plan = plan_modules(build, num_blocks, batch_shape, spec.num_classes, num_modules=cfg.modules, split=cfg.split,
                        budget=cfg.budget, transport=transport, boundaries=cfg.boundaries)
    micro = plan.micro_batch if plan.micro_batch < batch_shape[0] else cfg.micro_batch
    planned = dataclasses.replace(cfg, modules=len(plan.modules), boundaries=plan.boundaries or None, micro_batch=micro)
    return planned, plan
