"""Sequential training: one module at a time, the finished ones frozen.

Only the module being trained, its head, its optimizer state and the current batch live on the
compute device. Finished modules leave it (``Offloader``); their outputs are cached (``ModuleInputs``).
A checkpoint is written after every epoch and every finished module; a run resumes from its
``ctx.position`` (lap, module, epoch, batch).
"""

from __future__ import annotations

from edgetrgl.objectives import objective_of
from edgetrgl.training.context import Regime, RegimeContext, RegimeTraits
from edgetrgl.training.evaluation import module_accuracy
from edgetrgl.training.images import ImageBatches
from edgetrgl.training.inputs import ModuleInputs
from edgetrgl.training.offload import Offloader


def run(ctx: RegimeContext) -> None:
    train_laps(ctx, 1)


def train_laps(ctx: RegimeContext, laps: int) -> None:
    """``laps`` passes over the modules (sequential: one; multilap: ``--laps``)."""
    net, plan, cfg = ctx.net, ctx.plan, ctx.cfg
    offloader = Offloader(net, ctx.device, mode=plan.offload, folder=plan.cache.folder or ctx.run_dir)
    inputs = ModuleInputs(net.stages, ctx.train_set, ctx.test_set, plan.cache, batch_size=cfg.batch_size,
                          seed=cfg.seed, augment=cfg.augment, device=ctx.device, warn=ctx.warn,
                          on_recompute=offloader.keep_on_device, val_set=ctx.val_set,
                          micro_batch=plan.micro_batch)
    ctx.offloader = offloader
    ctx.data_mode = inputs.description
    objective = objective_of(net.heads[0])
    images = ImageBatches(inputs) if objective is not None and objective.needs_image else None  # InfoPro's
    start = dict(ctx.position)
    try:
        for lap in range(start["lap"], laps):
            first = start["module"] if lap == start["lap"] else 0
            inputs.reset(lap)
            _restore_inputs(inputs, offloader, first)
            for k in range(first, net.num_modules):
                train_module(ctx, k, lap, inputs, offloader, images)
                ctx.data_mode = inputs.description  # a full disk may have moved the cache
    finally:
        inputs.close()
        offloader.restore_all()
        ctx.offloader = None


def train_module(ctx: RegimeContext, k: int, lap: int, inputs: ModuleInputs, offloader: Offloader,
                 images: ImageBatches | None = None) -> None:
    """Train module k for its epochs, then freeze it, evaluate its head and cache its outputs.
    With ``images``, each batch carries its input images too (objectives that read them)."""
    stage, head, optimizer = offloader.bring(k), ctx.net.heads[k].to(ctx.device), ctx.optimizers[k]
    _optimizer_to(optimizer, ctx.device)
    epochs = ctx.epochs(k)
    ctx.start_modules()

    def step(x, y, global_step):
        x, image = x if isinstance(x, tuple) else (x, None)  # (features, images) for objectives that read them
        return ctx.train_step([k], x, y, global_step, image=image)[1]

    pos = ctx.position
    first_epoch = pos["epoch"] if (pos["lap"], pos["module"]) == (lap, k) else 0
    if first_epoch == 0 and not (pos["batch"] and (pos["lap"], pos["module"]) == (lap, k)):
        ctx.restart_multiplier(k)  # the multiplier starts afresh at each lap, as in the authors' code
    for epoch in range(first_epoch, epochs):
        stage.train(), head.train()
        batches = images.train_batches(k, epoch) if images is not None else inputs.train_batches(k, epoch)
        ctx.run_epoch([k], epoch, batches, step, label=f"module {k + 1} epoch {epoch + 1}/{epochs}",
                      where={"lap": lap, "module": k})

    scores = {}  # split -> accuracy of module k's head: the test set and the validation part, both

    def evaluate():
        if inputs.fills_cache(k):  # one pass over each split: cache module k's outputs and score its head on them
            with ctx.phase("cache_fill"):
                scores.update(inputs.module_done(k, head=head))
        else:
            with ctx.phase("evaluate"):
                scores.update({split: module_accuracy(stage, head, inputs.eval_batches(k, split))
                               for split in inputs.eval_sets})
            inputs.module_done(k)
        return {k: scores["test"]}

    # recalibrated before the cache fill, which the next module trains on
    ctx.finish_modules([k], lap=lap, evaluate=evaluate, validate=lambda: {k: scores["val"]},
                       recalibrate_on=lambda: inputs.train_batches(k, epochs - 1),
                       record=lambda: {"cache_bytes": inputs.cache_bytes})
    if inputs.mode != "none":
        _optimizer_to(optimizer, "cpu")
    offloader.release(k)
    last = k == ctx.net.num_modules - 1
    ctx.checkpoint(lap=lap + 1 if last else lap, module=0 if last else k + 1, epoch=0, batch=0, sums=None)


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
                "module k is trained fully before module k+1; finished modules are cached", epochs_for=_epochs,
                epochs_help="per module")
