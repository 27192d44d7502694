"""The module pipeline: each rank owns a contiguous group of modules; activations flow rank to rank.

Rank 0 reads the data and runs its modules; it sends the detached output of its last module (and
the labels) to rank 1, which runs its own modules and sends on, and so on. Each rank steps its own
modules on every batch: the parallel regime's step, cut into pieces. No gradient crosses a rank
(it would not cross a module boundary either), so nothing travels backward and no rank waits for
another's backward pass. Sends are asynchronous, so rank r works on batch t while rank r+1 still
works on batch t-1. With the same seed and data order the weights equal the single-process
``parallel`` regime's (bit for bit on the CPU at the same thread count).
"""

from __future__ import annotations

import collections
import itertools
import time

import torch
import torch.distributed as dist

from edgetrgl._faults import crash_point
from edgetrgl.data import make_loader
from edgetrgl.training.common import cosine_lr, local_step

_IN_FLIGHT = 2  # sends not yet completed before a rank waits: bounds the activations kept alive


def run(trainer) -> None:
    """Train ``trainer.owned`` modules of ``trainer.net`` for ``cfg.epochs`` epochs, as a pipeline stage."""
    cfg, net, device, env = trainer.cfg, trainer.net, trainer.device, trainer.env
    owned = trainer.owned
    for k in owned:
        net.stages[k].to(device), net.heads[k].to(device)
    link = Link(env.rank, env.world_size, input_shape(net, owned.start, trainer.train_set), device)
    n = len(trainer.train_set)
    steps_per_epoch = -(-n // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    start = trainer.position
    clock = trainer.start_module_clock()
    for epoch in range(start["epoch"], cfg.epochs):
        for k in owned:
            net.stages[k].train(), net.heads[k].train()
        started = time.perf_counter()
        skip = start["batch"] if epoch == start["epoch"] else 0
        sums = {k: dict(ce=0.0, transport=0.0, correct=0, seen=0, steps=0) for k in owned}
        batches = _batches(trainer, link, epoch, skip, steps_per_epoch)
        for batch, (x, y) in enumerate(batches, start=skip):
            step = epoch * steps_per_epoch + batch

            def step_own_modules(h=x):
                results = {}
                for k in owned:
                    cosine_lr(trainer.optimizers[k], cfg.lr, step, total_steps)
                    h, results[k] = local_step(net.stages[k], net.heads[k], trainer.optimizers[k], h, y,
                                               trainer.tau.weights(k), cfg.label_smoothing, cfg.micro_batch)
                return h, results

            if step == trainer.measure_at(total_steps):
                resident = [m for k in owned for m in (net.stages[k], net.heads[k], trainer.optimizers[k])]
                h, results = trainer.measured_step(None, step_own_modules, *resident, x, y)
            else:
                h, results = step_own_modules()
            link.send(h, y)  # asynchronous: the next rank starts on this batch while this one goes on
            for k, res in results.items():
                ce = float(res.ce)
                trainer.check_finite(ce, k, epoch)
                trainer.tau.observe(k, ce)
                s = sums[k]
                s["ce"], s["transport"] = s["ce"] + ce, s["transport"] + float(res.transport)
                s["correct"], s["seen"], s["steps"] = s["correct"] + int(res.correct), s["seen"] + res.seen, s["steps"] + 1
            crash_point("step")
        link.flush()
        records = [epoch_record(trainer, k, epoch, sums[k], started) for k in owned]
        for record in gather_to_main(records):
            trainer.writer.log(record)
        trainer.checkpoint(epoch=epoch + 1, batch=0, sums=None)
    for k in owned:
        trainer.modules[k]["epochs"] = cfg.epochs
    accuracies = evaluate(trainer, link)
    trainer.finish_module_clock(owned.stop - 1, clock)
    for k in owned:
        trainer.modules[k]["test_accuracy"] = accuracies[k]


def _batches(trainer, link: "Link", epoch: int, skip: int, steps_per_epoch: int):
    """Rank 0: the seeded loader's batches. Other ranks: what the previous rank sends."""
    cfg = trainer.cfg
    if link.prev is None:
        loader = make_loader(trainer.train_set, cfg.batch_size, shuffle=True, augment=cfg.augment, seed=cfg.seed,
                             epoch=epoch)
        for x, y in itertools.islice(loader, skip, None):
            yield x.to(trainer.device), y.to(trainer.device)
        return
    n = len(trainer.train_set)
    sizes = [min(cfg.batch_size, n - b * cfg.batch_size) for b in range(skip, steps_per_epoch)]
    yield from link.receive(sizes)


@torch.no_grad()
def evaluate(trainer, link: "Link") -> dict[int, float]:
    """Test accuracy of every owned head, the test set flowing through the pipeline once."""
    cfg, net = trainer.cfg, trainer.net
    for k in trainer.owned:
        net.stages[k].eval(), net.heads[k].eval()
    n = len(trainer.test_set)
    if link.prev is None:
        loader = make_loader(trainer.test_set, cfg.batch_size, shuffle=False, augment=False, seed=cfg.seed)
        batches = ((x.to(trainer.device), y.to(trainer.device)) for x, y in loader)
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


class Link:
    """Point-to-point traffic of one rank: receive from rank-1, send to rank+1 (NCCL or gloo).

    Receives are posted one batch ahead, so the transfer of batch t+1 overlaps the work on batch t.
    """

    def __init__(self, rank: int, world_size: int, in_shape: tuple[int, ...], device: torch.device) -> None:
        self.prev = rank - 1 if rank > 0 else None
        self.next = rank + 1 if rank < world_size - 1 else None
        self.in_shape, self.device = in_shape, device
        self._sends: collections.deque = collections.deque()

    def send(self, h: torch.Tensor, y: torch.Tensor) -> None:
        if self.next is None:
            return
        while len(self._sends) >= _IN_FLIGHT:
            self._sends.popleft().wait()
        h, y = h.contiguous(), y.contiguous()  # held by the request until the send completes
        self._sends.append(dist.isend(h, dst=self.next))
        self._sends.append(dist.isend(y, dst=self.next))

    def flush(self) -> None:
        while self._sends:
            self._sends.popleft().wait()

    def receive(self, sizes: list[int]):
        """Yield ``(x, y)`` for batches of the given sizes, in order."""
        pending = self._post(sizes[0]) if sizes else None
        for i in range(len(sizes)):
            x, y, requests = pending
            pending = self._post(sizes[i + 1]) if i + 1 < len(sizes) else None
            for request in requests:
                request.wait()
            yield x, y

    def _post(self, size: int):
        x = torch.empty((size, *self.in_shape), device=self.device)
        y = torch.empty((size,), dtype=torch.int64, device=self.device)
        return x, y, [dist.irecv(x, src=self.prev), dist.irecv(y, src=self.prev)]


@torch.no_grad()
def input_shape(net, first: int, dataset) -> tuple[int, ...]:
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


def epoch_record(trainer, k: int, epoch: int, sums: dict, started: float) -> dict:
    """The ``epoch`` record of module k, as :meth:`Trainer.log_epoch` writes it, built on its owner."""
    steps = max(sums["steps"], 1)
    return {"event": "epoch", "lap": 0, "module": k + 1, "epoch": epoch + 1, "ce": sums["ce"] / steps,
            "transport": sums["transport"] / steps, "train_accuracy": sums["correct"] / max(sums["seen"], 1),
            "tau": trainer.tau.tau_k(k), "lr": trainer.optimizers[k].param_groups[0]["lr"],
            "time_s": round(time.perf_counter() - started, 3), "rank": dist.get_rank()}


def gather_to_main(items: list) -> list:
    """Concatenate every rank's list on rank 0, in rank order (other ranks get [])."""
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(items, gathered, dst=0)
    return [item for part in gathered for item in part] if gathered is not None else []
