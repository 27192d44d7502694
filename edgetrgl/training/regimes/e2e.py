"""End-to-end backprop: the baseline. One module holding every block, one head, no transport term."""

from __future__ import annotations

from edgetrgl.data import make_loader
from edgetrgl.step import local_step
from edgetrgl.training.batchnorm import recalibrate_network
from edgetrgl.training.epoch import run_epoch
from edgetrgl.training.evaluation import evaluate_heads
from edgetrgl.training.regimes import Regime, RegimeTraits


def run(trainer) -> None:
    cfg, net, device = trainer.cfg, trainer.net, trainer.device
    net.to(device)
    stage, head, optimizer = net.stages[0], net.heads[0], trainer.optimizers[0]
    steps_per_epoch = trainer.steps_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    clock = trainer.start_module_clock()

    def step(x, y, global_step):
        x, y = x.to(device), y.to(device)
        trainer.set_lr(0, global_step, total_steps)
        options = dict(checkpoint_blocks=trainer.plan.checkpoint_blocks, precision=trainer.plan.precision)
        args = (stage, head, optimizer, x, y, trainer.tau.weights(0), cfg.label_smoothing, trainer.plan.micro_batch)
        if global_step == trainer.measure_at(total_steps):
            return [trainer.measured_step(0, lambda: local_step(*args, **options), *args[:5])[1]]
        return [local_step(*args, **options)[1]]

    for epoch in range(trainer.position["epoch"], cfg.epochs):
        net.train()
        loader = make_loader(trainer.train_set, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed, epoch=epoch)
        run_epoch(trainer, modules=[0], epoch=epoch, batches=loader, step=step,
                  label=f"e2e epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch=steps_per_epoch)
    trainer.modules[0]["epochs"] = cfg.epochs
    if cfg.recalibrate_bn:  # frozen parts keep theirs (see recalibrate_batchnorm)
        with trainer.phases.phase("recalibrate_bn"):
            recalibrate_network(net, trainer.train_set, cfg, device)
    with trainer.phases.phase("evaluate"):
        trainer.modules[0]["test_accuracy"] = evaluate_heads(net, trainer.test_set, cfg.batch_size, device)[0]
    trainer.finish_module_clock(0, clock)
    trainer.log_module(0, 0)


REGIME = Regime("e2e", run, RegimeTraits(modular=False, needs_cache=False, plans_budget=False, transport=False),
                "ordinary backprop through the whole network, one head: the baseline")
