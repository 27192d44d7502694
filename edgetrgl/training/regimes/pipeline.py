"""The module pipeline under torchrun: each rank owns a contiguous group of modules; activations flow
rank to rank.

Rank 0 reads the data and runs its modules; it sends the detached output of its last module (and
the labels) to rank 1, which runs its own modules and sends on, and so on. Each rank steps its own
modules on every batch: the parallel regime's step, cut into pieces. No gradient crosses a rank
(it would not cross a module boundary either), so nothing travels backward and no rank waits for
another's backward pass. Sends are asynchronous, so rank r works on batch t while rank r+1 still
works on batch t-1. With the same seed and data order the weights equal the single-process
``parallel`` regime's (bit for bit on the CPU at the same thread count).

The trainer is a :class:`edgetrgl.distributed.trainer.DistributedTrainer` (``owned``, ``env``),
built by :mod:`edgetrgl.distributed.run`; its checkpoints and epoch records are collective, and it
opens the link to the neighbouring ranks (``trainer.open_link``): this loop, below the
distributed layer, only calls it.
"""

from __future__ import annotations

import torch

from edgetrgl.data import make_loader
from edgetrgl.errors import UserError
from edgetrgl.step import local_step
from edgetrgl.training.epoch import run_epoch
from edgetrgl.training.regimes import Regime, RegimeTraits


def run(trainer) -> None:
    if getattr(trainer, "owned", None) is None:
        raise UserError("the pipeline regime runs one process per rank: start it with torchrun, e.g. "
                        "torchrun --nproc-per-node 2 -m edgetrgl train --regime pipeline")
    cfg, net, device, owned = trainer.cfg, trainer.net, trainer.device, trainer.owned
    for k in owned:
        net.stages[k].to(device), net.heads[k].to(device)
    link = trainer.open_link(module_input_shape(net, owned.start, trainer.train_set))
    n, steps_per_epoch = len(trainer.train_set), trainer.steps_per_epoch
    total_steps = cfg.epochs * steps_per_epoch
    clock = trainer.start_module_clock()

    def step(x, y, global_step):
        def step_own_modules(h=x):
            results = []
            for k in owned:
                trainer.set_lr(k, global_step, total_steps)
                h, res = local_step(net.stages[k], net.heads[k], trainer.optimizers[k], h, y,
                                    trainer.tau.weights(k), cfg.label_smoothing, trainer.plan.micro_batch,
                                    checkpoint_blocks=trainer.plan.checkpoint_blocks, precision=trainer.plan.precision)
                results.append(res)
            return h, results

        if global_step == trainer.measure_at(total_steps):
            resident = [m for k in owned for m in (net.stages[k], net.heads[k], trainer.optimizers[k])]
            h, results = trainer.measured_step(None, step_own_modules, *resident, x, y)
        else:
            h, results = step_own_modules()
        link.send(h, y)  # asynchronous: the next rank starts on this batch while this one goes on
        return results

    for epoch in range(trainer.position["epoch"], cfg.epochs):
        for k in owned:
            net.stages[k].train(), net.heads[k].train()
        if link.prev is None:  # rank 0 reads the data, in the single-process order
            loader = make_loader(trainer.train_set, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed,
                                 epoch=epoch)
            batches = ((x.to(device), y.to(device)) for x, y in loader)
        else:  # the others receive what the rank before sends (a checkpoint falls on an epoch's end)
            batches = link.receive([min(cfg.batch_size, n - b * cfg.batch_size) for b in range(steps_per_epoch)])
        run_epoch(trainer, modules=list(owned), epoch=epoch, batches=batches, step=step,
                  label=f"pipeline epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch=steps_per_epoch)
        link.flush()
    accuracies = evaluate(trainer, link)
    trainer.finish_module_clock(owned.stop - 1, clock)
    for k in owned:
        trainer.modules[k]["epochs"] = cfg.epochs
        trainer.modules[k]["test_accuracy"] = accuracies[k]


def evaluate(trainer, link) -> dict[int, float]:
    """Test accuracy of every owned head, the test set flowing through the pipeline once."""
    cfg, net, device = trainer.cfg, trainer.net, trainer.device
    n = len(trainer.test_set)
    with torch.no_grad():
        for k in trainer.owned:
            net.stages[k].eval(), net.heads[k].eval()
        if link.prev is None:
            loader = make_loader(trainer.test_set, cfg.batch_size, shuffle=False, augment=False, seed=cfg.seed)
            batches = ((x.to(device), y.to(device)) for x, y in loader)
        else:
            batches = link.receive([min(cfg.batch_size, n - s) for s in range(0, n, cfg.batch_size)])
        correct = dict.fromkeys(trainer.owned, 0)
        for x, y in batches:
            for k in trainer.owned:
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
