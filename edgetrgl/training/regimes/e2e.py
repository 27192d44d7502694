"""End-to-end backprop: the baseline. One module holding every block, one head, no transport term."""

from __future__ import annotations

from edgetrgl.training.context import Regime, RegimeContext, RegimeTraits
from edgetrgl.training.evaluation import evaluate_heads


def run(ctx: RegimeContext) -> None:
    cfg, net = ctx.cfg, ctx.net
    net.to(ctx.device)
    ctx.start_modules()
    for epoch in range(ctx.position["epoch"], cfg.epochs):
        net.train()
        ctx.run_epoch([0], epoch, ctx.loader(epoch), lambda x, y, step: ctx.train_step([0], x, y, step)[1],
                      label=f"e2e epoch {epoch + 1}/{cfg.epochs}")

    def evaluate():
        with ctx.phase("evaluate"):
            return {0: evaluate_heads(net, ctx.test_set, cfg.batch_size, ctx.device)[0]}

    def validate():
        with ctx.phase("evaluate"):
            return {0: evaluate_heads(net, ctx.val_set, cfg.batch_size, ctx.device)[0]}

    ctx.finish_modules([0], lap=0, evaluate=evaluate, validate=validate, recalibrate_on=lambda: ctx.loader(max(cfg.epochs - 1, 0)))


REGIME = Regime("e2e", run, RegimeTraits(modular=False, needs_cache=False, plans_budget=False, transport=False),
                "ordinary backprop through the whole network, one head: the baseline")
