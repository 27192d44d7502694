"""Sequential and multi-lap training: one module at a time, the finished ones frozen.

Only the module being trained, its head, its optimizer state and the current batch live on the
compute device. Finished modules leave it; their outputs are cached (see ``inputs.py``).
"""

from __future__ import annotations

import time

from edgetrgl.train.common import cosine_lr, count_correct, local_step
from edgetrgl.train.inputs import ModuleInputs
from edgetrgl.train.offload import Offloader


def run(trainer) -> None:
    cfg, net = trainer.cfg, trainer.net
    inputs = ModuleInputs(net.stages, trainer.train_set, trainer.test_set, batch_size=cfg.batch_size, seed=cfg.seed,
                          augment=cfg.augment, device=trainer.device, cache=cfg.cache, cache_dtype=cfg.cache_dtype,
                          cache_views=cfg.cache_views, cache_dir=trainer.cache_dir)
    offloader = Offloader(net, trainer.device, mode=cfg.offload if inputs.mode != "none" else "none",
                          folder=trainer.cache_dir)
    trainer.data_mode = inputs.description
    laps = cfg.laps if cfg.regime == "multilap" else 1
    try:
        for lap in range(laps):
            inputs.reset()
            for k in range(net.num_modules):
                train_module(trainer, k, lap, inputs, offloader)
    finally:
        inputs.close()
        offloader.restore_all()


def train_module(trainer, k: int, lap: int, inputs: ModuleInputs, offloader) -> None:
    """Train module k for its epochs, then freeze it, cache its outputs and evaluate its head."""
    cfg = trainer.cfg
    stage, head, optimizer = offloader.bring(k), trainer.net.heads[k].to(trainer.device), trainer.optimizers[k]
    _optimizer_to(optimizer, trainer.device)
    epochs = trainer.epochs_for(k)
    steps_per_epoch = -(-len(trainer.train_set) // cfg.batch_size)
    total_steps, step = epochs * steps_per_epoch, 0
    clock = trainer.start_module_clock()
    for epoch in range(epochs):
        stage.train(), head.train()
        started, sums, steps = time.perf_counter(), dict(ce=0.0, transport=0.0, correct=0, seen=0), 0
        with trainer.writer.progress(f"module {k + 1} epoch {epoch + 1}/{epochs}", steps_per_epoch) as bar:
            for x, y in inputs.train_batches(k, epoch):
                cosine_lr(optimizer, cfg.lr, step, total_steps)
                weights = trainer.tau.weights(k)
                if step == 0:  # the first step of each module is measured, tensor by tensor
                    out, res = trainer.measured_step(k, lambda: local_step(stage, head, optimizer, x, y, weights, cfg.label_smoothing, cfg.micro_batch),
                                                     stage, head, optimizer, x, y)
                else:
                    out, res = local_step(stage, head, optimizer, x, y, weights, cfg.label_smoothing, cfg.micro_batch)
                ce = float(res.ce)
                trainer.check_finite(ce, k, epoch)
                trainer.tau.observe(k, ce)
                sums["ce"] += ce
                sums["transport"] += float(res.transport)
                steps, step = steps + 1, step + 1
                bar.advance(f"ce {ce:.3f}")
        trainer.log_epoch(k, epoch, lap, sums, steps, started)
    trainer.modules[k]["epochs"] += epochs
    trainer.modules[k]["test_accuracy"] = trainer.accuracy(k, inputs.test_batches(k))
    inputs.module_done(k)  # cache write: module k's outputs become module k+1's inputs
    trainer.finish_module_clock(k, clock)
    trainer.modules[k]["cache_bytes"] = inputs.cache_bytes
    _optimizer_to(optimizer, "cpu") if inputs.mode != "none" else None
    offloader.release(k)
    trainer.log_module(k, lap)


def _optimizer_to(optimizer, device) -> None:
    """Move momentum buffers with their module: the optimizer state of a frozen module leaves the device."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if hasattr(value, "to"):
                state[key] = value.to(device)
