"""Sequential training: one module at a time, the finished ones frozen.

Only the module being trained, its head, its optimizer state and the current batch live on the
compute device. Finished modules leave it (``Offloader``); their outputs are cached (``ModuleInputs``).
A checkpoint is written after every epoch and every finished module; a run resumes from its
``trainer.position`` (lap, module, epoch, batch).
"""

from __future__ import annotations

from edgetrgl.objectives import objective_of
from edgetrgl.step import local_step
from edgetrgl.training.batchnorm import recalibrate_batchnorm
from edgetrgl.training.images import ImageBatches
from edgetrgl.training.epoch import run_epoch
from edgetrgl.training.inputs import ModuleInputs
from edgetrgl.training.offload import Offloader
from edgetrgl.training.regimes import Regime, RegimeTraits


def run(trainer) -> None:
    train_laps(trainer, 1)


def train_laps(trainer, laps: int) -> None:
    """``laps`` passes over the modules (sequential: one; multilap: ``--laps``)."""
    net, plan = trainer.net, trainer.plan
    offloader = Offloader(net, trainer.device, mode=plan.offload, folder=plan.cache.folder or trainer.run_dir)
    inputs = ModuleInputs(net.stages, trainer.train_set, trainer.test_set, plan.cache, batch_size=trainer.cfg.batch_size,
                          seed=trainer.cfg.seed, augment=trainer.cfg.augment, device=trainer.device,
                          warn=trainer.writer.warn, on_recompute=offloader.keep_on_device)
    trainer.offloader = offloader
    trainer.data_mode = inputs.description
    objective = objective_of(net.heads[0])
    images = ImageBatches(inputs) if objective is not None and objective.needs_image else None  # InfoPro's
    start = dict(trainer.position)
    try:
        for lap in range(start["lap"], laps):
            first = start["module"] if lap == start["lap"] else 0
            inputs.reset(lap)
            _restore_inputs(inputs, offloader, first)
            for k in range(first, net.num_modules):
                train_module(trainer, k, lap, inputs, offloader, images)
                trainer.data_mode = inputs.description  # a full disk may have moved the cache
    finally:
        inputs.close()
        offloader.restore_all()
        trainer.offloader = None


def train_module(trainer, k: int, lap: int, inputs: ModuleInputs, offloader: Offloader,
                 images: ImageBatches | None = None) -> None:
    """Train module k for its epochs, then freeze it, evaluate its head and cache its outputs.
    With ``images``, each batch carries its input images too (objectives that read them)."""
    cfg = trainer.cfg
    stage, head, optimizer = offloader.bring(k), trainer.net.heads[k].to(trainer.device), trainer.optimizers[k]
    _optimizer_to(optimizer, trainer.device)
    epochs = trainer.epochs_for(k)
    steps_per_epoch = trainer.steps_per_epoch
    total_steps = epochs * steps_per_epoch
    clock = trainer.start_module_clock()

    def step(x, y, global_step):
        x, image = x if isinstance(x, tuple) else (x, None)  # (features, images) for objectives that read them
        trainer.set_lr(k, global_step, total_steps)
        options = dict(checkpoint_blocks=trainer.plan.checkpoint_blocks, precision=trainer.plan.precision, image=image)
        args = (stage, head, optimizer, x, y, trainer.tau.weights(k), cfg.label_smoothing, trainer.plan.micro_batch)
        if global_step == trainer.measure_at(total_steps):  # measured, tensor by tensor
            resident = (*args[:5], image) if image is not None else args[:5]
            return [trainer.measured_step(k, lambda: local_step(*args, **options), *resident)[1]]
        return [local_step(*args, **options)[1]]

    pos = trainer.position
    first_epoch = pos["epoch"] if (pos["lap"], pos["module"]) == (lap, k) else 0
    if first_epoch == 0 and not (pos["batch"] and (pos["lap"], pos["module"]) == (lap, k)):
        trainer.tau.restart(k)  # the multiplier starts afresh at each lap, as in the authors' code
    for epoch in range(first_epoch, epochs):
        stage.train(), head.train()
        batches = images.train_batches(k, epoch) if images is not None else inputs.train_batches(k, epoch)
        run_epoch(trainer, modules=[k], epoch=epoch, batches=batches, step=step,
                  label=f"module {k + 1} epoch {epoch + 1}/{epochs}", steps_per_epoch=steps_per_epoch,
                  where={"lap": lap, "module": k})
    # not a module kept for fine-tuning (0 epochs); before the cache fill, which the next module trains on
    if cfg.recalibrate_bn and epochs > 0:
        with trainer.phases.phase("recalibrate_bn"):
            recalibrate_batchnorm([(stage, head)], inputs.train_batches(k, epochs - 1), trainer.device)
    trainer.modules[k]["epochs"] += epochs
    if inputs.fills_cache(k):  # one pass over the test set: cache module k's outputs and score its head on them
        with trainer.phases.phase("cache_fill"):
            trainer.modules[k]["test_accuracy"] = inputs.module_done(k, head=trainer.net.heads[k])
    else:
        trainer.modules[k]["test_accuracy"] = trainer.accuracy(k, inputs.test_batches(k))
        inputs.module_done(k)
    trainer.finish_module_clock(k, clock)
    trainer.modules[k]["cache_bytes"] = inputs.cache_bytes
    if inputs.mode != "none":
        _optimizer_to(optimizer, "cpu")
    offloader.release(k)
    trainer.log_module(k, lap)
    last = k == trainer.net.num_modules - 1
    trainer.checkpoint(lap=lap + 1 if last else lap, module=0 if last else k + 1, epoch=0, batch=0, sums=None)


def _restore_inputs(inputs: ModuleInputs, offloader: Offloader, first: int) -> None:
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


def _epochs(cfg, k: int) -> int:
    return cfg.epochs + k * cfg.epochs_step  # deeper modules may train longer (the paper: 50 + 10k)


REGIME = Regime("sequential", run, RegimeTraits(modular=True, needs_cache=True, plans_budget=True),
                "module k is trained fully before module k+1; finished modules are cached", epochs_for=_epochs)
