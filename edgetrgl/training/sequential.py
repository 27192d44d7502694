"""Sequential and multi-lap training: one module at a time, the finished ones frozen.

Only the module being trained, its head, its optimizer state and the current batch live on the
compute device. Finished modules leave it; their outputs are cached (see ``inputs.py``).
A checkpoint is written after every epoch and every finished module; a run resumes from its
``trainer.position`` (lap, module, epoch, batch).
"""

from __future__ import annotations

import itertools
import time

from edgetrgl._faults import crash_point
from edgetrgl.training.common import cosine_lr, local_step
from edgetrgl.training.inputs import ModuleInputs
from edgetrgl.training.offload import Offloader


def run(trainer) -> None:
    cfg, net = trainer.cfg, trainer.net
    inputs = ModuleInputs(net.stages, trainer.train_set, trainer.test_set, batch_size=cfg.batch_size, seed=cfg.seed,
                          augment=cfg.augment, device=trainer.device, cache=cfg.cache, cache_dtype=cfg.cache_dtype,
                          cache_views=cfg.cache_views, cache_dir=trainer.cache_dir, keep=cfg.keep_cache,
                          warn=trainer.writer.warn)
    offloader = Offloader(net, trainer.device, mode=cfg.offload if inputs.mode != "none" else "none",
                          folder=trainer.cache_dir or trainer.run_dir)
    trainer.offloader = offloader
    trainer.data_mode = inputs.description
    laps = cfg.laps if cfg.regime == "multilap" else 1
    start = dict(trainer.position)
    try:
        for lap in range(start["lap"], laps):
            first = start["module"] if lap == start["lap"] else 0
            inputs.reset(lap)
            _restore_inputs(inputs, offloader, first)
            for k in range(first, net.num_modules):
                resume = (start["epoch"], start["batch"], start.get("sums")) if (lap, k) == (start["lap"], start["module"]) else (0, 0, None)
                train_module(trainer, k, lap, inputs, offloader, *resume)
                trainer.data_mode = inputs.description  # a full disk may have moved the cache
    finally:
        inputs.close()
        offloader.restore_all()
        trainer.offloader = None


def train_module(trainer, k: int, lap: int, inputs: ModuleInputs, offloader, start_epoch: int = 0,
                 start_batch: int = 0, start_sums: dict | None = None) -> None:
    """Train module k for its epochs, then freeze it, evaluate its head and cache its outputs."""
    cfg = trainer.cfg
    stage, head, optimizer = offloader.bring(k), trainer.net.heads[k].to(trainer.device), trainer.optimizers[k]
    _optimizer_to(optimizer, trainer.device)
    epochs = trainer.epochs_for(k)
    if start_epoch == 0 and start_batch == 0:
        trainer.tau.restart(k)  # the multiplier starts afresh at each lap, as in the authors' code
    steps_per_epoch = -(-len(trainer.train_set) // cfg.batch_size)
    total_steps = epochs * steps_per_epoch
    clock = trainer.start_module_clock()
    for epoch in range(start_epoch, epochs):
        stage.train(), head.train()
        skip = start_batch if epoch == start_epoch else 0
        sums = dict(start_sums) if (skip and start_sums) else dict(ce=0.0, transport=0.0, correct=0, seen=0, steps=0)
        started = time.perf_counter()
        batches = itertools.islice(inputs.train_batches(k, epoch), skip, None)  # resume mid-epoch: same order
        with trainer.writer.progress(f"module {k + 1} epoch {epoch + 1}/{epochs}", steps_per_epoch - skip) as bar:
            for batch, (x, y) in enumerate(batches, start=skip):
                step = epoch * steps_per_epoch + batch
                cosine_lr(optimizer, cfg.lr, step, total_steps, cfg.lr_schedule)
                weights = trainer.tau.weights(k)
                if step == trainer.measure_at(total_steps):  # measured, tensor by tensor
                    out, res = trainer.measured_step(k, lambda: local_step(stage, head, optimizer, x, y, weights, cfg.label_smoothing, cfg.micro_batch),
                                                     stage, head, optimizer, x, y)
                else:
                    out, res = local_step(stage, head, optimizer, x, y, weights, cfg.label_smoothing, cfg.micro_batch)
                ce = float(res.ce)
                trainer.check_finite(ce, k, epoch)
                trainer.tau.observe(k, ce)
                sums["ce"] += ce
                sums["transport"] += float(res.transport)
                sums["correct"] += int(res.correct)
                sums["seen"] += res.seen
                sums["steps"] += 1
                bar.advance(f"ce {ce:.3f}")
                crash_point("step")
                if trainer.stop_requested:
                    trainer.interrupt(lap=lap, module=k, epoch=epoch, batch=batch + 1, sums=sums)
        trainer.log_epoch(k, epoch, lap, sums, sums["steps"], started)
        trainer.checkpoint(lap=lap, module=k, epoch=epoch + 1, batch=0, sums=None)
    trainer.modules[k]["epochs"] += epochs
    trainer.modules[k]["test_accuracy"] = trainer.accuracy(k, inputs.test_batches(k))
    inputs.module_done(k)  # cache write: module k's outputs become module k+1's inputs
    trainer.finish_module_clock(k, clock)
    trainer.modules[k]["cache_bytes"] = inputs.cache_bytes
    if inputs.mode != "none":
        _optimizer_to(optimizer, "cpu")
    offloader.release(k)
    trainer.log_module(k, lap)
    last = k == trainer.net.num_modules - 1
    trainer.checkpoint(lap=lap + 1 if last else lap, module=0 if last else k + 1, epoch=0, batch=0, sums=None)


def _restore_inputs(inputs: ModuleInputs, offloader, first: int) -> None:
    """Resuming at module ``first``: reuse a sealed disk cache of module ``first - 1`` if it checks
    out against its manifest, else rebuild the chain of caches (or put the prefix on the device)."""
    if first == 0 or (inputs.mode == "disk" and inputs.try_reuse(first - 1)):
        return
    for j in range(first):
        offloader.bring(j)
        inputs.module_done(j)
        offloader.release(j)


def _optimizer_to(optimizer, device) -> None:
    """Move momentum buffers with their module: the optimizer state of a frozen module leaves the device."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if hasattr(value, "to"):
                state[key] = value.to(device)
