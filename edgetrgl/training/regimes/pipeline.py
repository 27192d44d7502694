"""The module pipeline under torchrun: each rank owns a contiguous group of modules; activations flow
rank to rank.

Rank 0 reads the data and runs its modules; it sends the detached output of its last module (and
the labels) to rank 1, which runs its own modules and sends on, and so on. Each rank steps its own
modules on every batch: the parallel regime's step, cut into pieces. No gradient crosses a rank
(it would not cross a module boundary either), so nothing travels backward and no rank waits for
another's backward pass. Sends are asynchronous, so rank r works on batch t while rank r+1 still
works on batch t-1. With the same seed and data order the weights equal the single-process
``parallel`` regime's (bit for bit on the CPU at the same thread count).

The context is a rank's trainer (``edgetrgl.distributed``): its ``owned`` modules, its collective
checkpoints and epoch records, and the link to the neighbouring ranks (``ctx.open_link``), which
this loop, below the distributed layer, only calls. Freezing (``--freeze-modules``) is the
context's: a frozen module only runs forward, on any rank.
"""

from __future__ import annotations

import torch

from edgetrgl.data import make_loader
from edgetrgl.objectives import objective_of
from edgetrgl.training.context import Regime, RegimeContext, RegimeTraits


def run(ctx: RegimeContext) -> None:
    cfg, net, device, owned = ctx.cfg, ctx.net, ctx.device, list(ctx.owned)
    link = ctx.open_link(module_input_shape(net, owned[0], ctx.train_set))  # one line without torchrun
    for k in owned:
        net.stages[k].to(device), net.heads[k].to(device)
    n, steps_per_epoch = len(ctx.train_set), ctx.steps_per_epoch
    ctx.start_modules()
    objective = objective_of(net.heads[owned[0]])
    # objectives that read the input images (InfoPro) get them from rank 0, beside the activations
    image_shape = tuple(ctx.train_set[0][0].shape) if objective is not None and objective.needs_image else None

    def step(x, y, global_step):
        x, image = x if isinstance(x, tuple) else (x, x if image_shape is not None else None)
        h, results = ctx.train_step(owned, x, y, global_step, image=image, keep_output=True)
        link.send(h, y, image)  # asynchronous: the next rank starts on this batch while this one goes on
        return results

    for epoch in range(ctx.position["epoch"], cfg.epochs):
        for k in owned:
            net.stages[k].train(), net.heads[k].train()
        if link.prev is None:  # rank 0 reads the data, in the single-process order
            batches = ((x.to(device), y.to(device)) for x, y in ctx.loader(epoch))
        else:  # the others receive what the rank before sends (a checkpoint falls on an epoch's end)
            batches = link.receive([min(cfg.batch_size, n - b * cfg.batch_size) for b in range(steps_per_epoch)],
                                   image_shape)
        ctx.run_epoch(owned, epoch, batches, step, label=f"pipeline epoch {epoch + 1}/{cfg.epochs}")
        link.flush()
    # no BatchNorm recalibration: torchrun refuses --recalibrate-bn (each rank would average its own part)
    ctx.finish_modules(owned, lap=0, evaluate=lambda: evaluate(ctx, link),
                       validate=lambda: evaluate(ctx, link, ctx.val_set))


def evaluate(ctx: RegimeContext, link, dataset=None) -> dict[int, float]:
    """Accuracy of every owned head on ``dataset`` (default: the test set), flowing through the pipeline once."""
    cfg, net, device = ctx.cfg, ctx.net, ctx.device
    dataset = ctx.test_set if dataset is None else dataset
    n = len(dataset)
    with torch.no_grad(), ctx.phase("evaluate"):
        for k in ctx.owned:
            net.stages[k].eval(), net.heads[k].eval()
        if link.prev is None:
            loader = make_loader(dataset, cfg.batch_size, shuffle=False, augment=False, seed=cfg.seed)
            batches = ((x.to(device), y.to(device)) for x, y in loader)
        else:
            batches = link.receive([min(cfg.batch_size, n - s) for s in range(0, n, cfg.batch_size)])
        correct = dict.fromkeys(ctx.owned, 0)
        for x, y in batches:
            for k in ctx.owned:
                x = net.stages[k](x)
                correct[k] += int((net.heads[k](x).argmax(dim=1) == y).sum())
            link.send(x, y)
        link.flush()
    return {k: c / max(n, 1) for k, c in correct.items()}


@torch.no_grad()
def module_input_shape(net, first: int, dataset) -> tuple[int, ...]:
    """Shape (without the batch) of module ``first``'s input: a probe through the modules before it."""
    x = dataset.batch(torch.arange(min(2, len(dataset))))[0] if hasattr(dataset, "batch") else \
        torch.stack([dataset[i][0] for i in range(min(2, len(dataset)))])
    for k in range(first):
        stage = net.stages[k]
        was_training = stage.training
        stage.eval()  # the probe must not move BatchNorm running statistics
        x = stage.to("cpu")(x)
        stage.train(was_training)
    return tuple(x.shape[1:])


REGIME = Regime("pipeline", run, RegimeTraits(modular=True, needs_cache=False, plans_budget=False, multi_process=True),
                "under torchrun: each rank trains a contiguous group of modules; activations flow rank to rank")
