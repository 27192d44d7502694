"""Parallel (decoupled) training: every batch goes through all modules; each module steps right
after its own forward, then hands its output on detached."""

from __future__ import annotations

import itertools
import time

from edgetrgl._faults import crash_point
from edgetrgl.data import make_loader
from edgetrgl.finetune import frozen_step
from edgetrgl.training.common import cosine_lr, evaluate_heads, local_step


def run(trainer) -> None:
    cfg, net, device = trainer.cfg, trainer.net, trainer.device
    K = net.num_modules
    net.to(device)
    steps_per_epoch = -(-len(trainer.train_set) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    start = trainer.position
    clock = trainer.start_module_clock()
    for epoch in range(start["epoch"], cfg.epochs):
        net.train()
        started = time.perf_counter()
        skip = start["batch"] if epoch == start["epoch"] else 0
        sums = start.get("sums") if skip else None
        sums = sums or [dict(ce=0.0, transport=0.0, correct=0, seen=0, steps=0) for _ in range(K)]
        loader = make_loader(trainer.train_set, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed, epoch=epoch)
        with trainer.writer.progress(f"parallel epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch - skip) as bar:
            for batch, (x, y) in enumerate(itertools.islice(loader, skip, None), start=skip):
                step = epoch * steps_per_epoch + batch
                x, y = x.to(device), y.to(device)

                def step_all_modules(h=x):
                    results = []
                    for k in range(K):
                        cosine_lr(trainer.optimizers[k], cfg.lr, step, total_steps)
                        step_k = frozen_step if k < cfg.freeze_modules else local_step  # fine-tuning: forward only
                        h, res = step_k(net.stages[k], net.heads[k], trainer.optimizers[k], h, y,
                                        trainer.tau.weights(k), cfg.label_smoothing, cfg.micro_batch)
                        results.append(res)  # h is detached: no gradient reaches module k-1
                    return results

                if step == trainer.measure_at(total_steps):  # every module is resident: measure the whole step
                    results = trainer.measured_step(None, step_all_modules, net, *trainer.optimizers, x, y)
                else:
                    results = step_all_modules()
                for k, res in enumerate(results):
                    ce = float(res.ce)
                    trainer.check_finite(ce, k, epoch)
                    trainer.tau.observe(k, ce)
                    sums[k]["ce"] += ce
                    sums[k]["transport"] += float(res.transport)
                    sums[k]["correct"] += int(res.correct)
                    sums[k]["seen"] += res.seen
                    sums[k]["steps"] += 1
                bar.advance()
                crash_point("step")
                if trainer.stop_requested:
                    trainer.interrupt(epoch=epoch, batch=batch + 1, sums=sums)
        for k in range(K):
            trainer.log_epoch(k, epoch, 0, sums[k], sums[k]["steps"], started)
        trainer.checkpoint(epoch=epoch + 1, batch=0, sums=None)
    for k in range(K):
        trainer.modules[k]["epochs"] = cfg.epochs
    accuracies = evaluate_all(trainer)
    trainer.finish_module_clock(K - 1, clock)
    for k in range(K):
        trainer.modules[k]["test_accuracy"] = accuracies[k]
        trainer.log_module(k, 0)


def evaluate_all(trainer) -> list[float]:
    """Test accuracy of every module's head in one pass over the test set."""
    return evaluate_heads(trainer.net, trainer.test_set, trainer.cfg.batch_size, trainer.device)
