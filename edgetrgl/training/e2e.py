"""End-to-end backprop: the baseline. One module holding every block, one head, no transport term."""

from __future__ import annotations

import itertools
import time

from edgetrgl._faults import crash_point
from edgetrgl.data import make_loader
from edgetrgl.training.common import cosine_lr, local_step
from edgetrgl.training.parallel import evaluate_all


def run(trainer) -> None:
    cfg, net, device = trainer.cfg, trainer.net, trainer.device
    assert net.num_modules == 1, "e2e trains a single module (build it with num_modules=1)"
    net.to(device)
    stage, head, optimizer = net.stages[0], net.heads[0], trainer.optimizers[0]
    steps_per_epoch = -(-len(trainer.train_set) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    start = trainer.position
    clock = trainer.start_module_clock()
    for epoch in range(start["epoch"], cfg.epochs):
        net.train()
        skip = start["batch"] if epoch == start["epoch"] else 0
        sums = (start.get("sums") if skip else None) or dict(ce=0.0, transport=0.0, correct=0, seen=0, steps=0)
        started = time.perf_counter()
        loader = make_loader(trainer.train_set, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed, epoch=epoch)
        with trainer.writer.progress(f"e2e epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch - skip) as bar:
            for batch, (x, y) in enumerate(itertools.islice(loader, skip, None), start=skip):
                step = epoch * steps_per_epoch + batch
                x, y = x.to(device), y.to(device)
                cosine_lr(optimizer, cfg.lr, step, total_steps, cfg.lr_schedule)
                args = (stage, head, optimizer, x, y, trainer.tau.weights(0), cfg.label_smoothing, cfg.micro_batch)
                _, res = trainer.measured_step(0, lambda: local_step(*args), *args[:5]) if step == trainer.measure_at(total_steps) else local_step(*args)
                ce = float(res.ce)
                trainer.check_finite(ce, 0, epoch)
                sums["ce"] += ce
                sums["transport"] += float(res.transport)
                sums["correct"] += int(res.correct)
                sums["seen"] += res.seen
                sums["steps"] += 1
                bar.advance(f"ce {ce:.3f}")
                crash_point("step")
                if trainer.stop_requested:
                    trainer.interrupt(epoch=epoch, batch=batch + 1, sums=sums)
        trainer.log_epoch(0, epoch, 0, sums, sums["steps"], started)
        trainer.checkpoint(epoch=epoch + 1, batch=0, sums=None)
    trainer.modules[0]["epochs"] = cfg.epochs
    trainer.modules[0]["test_accuracy"] = evaluate_all(trainer)[0]
    trainer.finish_module_clock(0, clock)
    trainer.log_module(0, 0)
