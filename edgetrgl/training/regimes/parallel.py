"""Parallel (decoupled) training: every batch goes through all modules; each module steps right
after its own forward, then hands its output on detached."""

from __future__ import annotations

from edgetrgl.training.context import Regime, RegimeContext, RegimeTraits
from edgetrgl.training.evaluation import evaluate_heads


def run(ctx: RegimeContext) -> None:
    cfg, net = ctx.cfg, ctx.net
    modules = list(range(net.num_modules))
    net.to(ctx.device)
    ctx.start_modules()
    for epoch in range(ctx.position["epoch"], cfg.epochs):
        net.train()
        # every module of the step is resident, so the whole step is what is measured
        ctx.run_epoch(modules, epoch, ctx.loader(epoch),
                      lambda x, y, step: ctx.train_step(modules, x, y, step, image=x)[1],
                      label=f"parallel epoch {epoch + 1}/{cfg.epochs}")

    def evaluate():
        with ctx.phase("evaluate"):
            return dict(enumerate(evaluate_heads(net, ctx.test_set, cfg.batch_size, ctx.device)))

    def validate():
        with ctx.phase("evaluate"):
            return dict(enumerate(evaluate_heads(net, ctx.val_set, cfg.batch_size, ctx.device)))

    ctx.finish_modules(modules, lap=0, evaluate=evaluate, validate=validate, recalibrate_on=lambda: ctx.loader(max(cfg.epochs - 1, 0)))


REGIME = Regime("parallel", run, RegimeTraits(modular=True, needs_cache=False, plans_budget=False),
                "each batch goes through all modules; each module steps right after its own forward")
