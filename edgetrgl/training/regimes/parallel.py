"""Parallel (decoupled) training: every batch goes through all modules; each module steps right
after its own forward, then hands its output on detached."""

from __future__ import annotations

from edgetrgl.data import make_loader
from edgetrgl.step import frozen_step, local_step
from edgetrgl.training.batchnorm import recalibrate_network
from edgetrgl.training.epoch import run_epoch
from edgetrgl.training.evaluation import evaluate_heads
from edgetrgl.training.regimes import Regime, RegimeTraits


def run(trainer) -> None:
    cfg, net, device = trainer.cfg, trainer.net, trainer.device
    K = net.num_modules
    net.to(device)
    steps_per_epoch = trainer.steps_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    clock = trainer.start_module_clock()

    def step(x, y, global_step):
        x, y = x.to(device), y.to(device)

        def step_all_modules(h=x):
            results = []
            for k in range(K):
                trainer.set_lr(k, global_step, total_steps)
                if k < cfg.freeze_modules:  # fine-tuning: forward only
                    h, res = frozen_step(net.stages[k], net.heads[k], trainer.optimizers[k], h, y,
                                         trainer.tau.weights(k), cfg.label_smoothing)
                else:
                    h, res = local_step(net.stages[k], net.heads[k], trainer.optimizers[k], h, y,
                                        trainer.tau.weights(k), cfg.label_smoothing, trainer.plan.micro_batch,
                                        checkpoint_blocks=trainer.plan.checkpoint_blocks, precision=trainer.plan.precision,
                                        image=x)
                results.append(res)  # h is detached: no gradient reaches module k-1
            return results

        if global_step == trainer.measure_at(total_steps):  # every module is resident: measure the whole step
            return trainer.measured_step(None, step_all_modules, net, *trainer.optimizers, x, y)
        return step_all_modules()

    for epoch in range(trainer.position["epoch"], cfg.epochs):
        net.train()
        loader = make_loader(trainer.train_set, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed, epoch=epoch)
        run_epoch(trainer, modules=list(range(K)), epoch=epoch, batches=loader, step=step,
                  label=f"parallel epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch=steps_per_epoch)
    if cfg.recalibrate_bn:  # frozen parts keep theirs (see recalibrate_batchnorm)
        with trainer.phases.phase("recalibrate_bn"):
            recalibrate_network(net, trainer.train_set, cfg, device)
    with trainer.phases.phase("evaluate"):
        accuracies = evaluate_heads(net, trainer.test_set, cfg.batch_size, device)
    trainer.finish_module_clock(K - 1, clock)
    for k in range(K):
        trainer.modules[k]["epochs"] = cfg.epochs
        trainer.modules[k]["test_accuracy"] = accuracies[k]
        trainer.log_module(k, 0)


REGIME = Regime("parallel", run, RegimeTraits(modular=True, needs_cache=False, plans_budget=False),
                "each batch goes through all modules; each module steps right after its own forward")
