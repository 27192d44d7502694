"""What travels between pipeline ranks: activations forward rank to rank (``Link``), records to rank 0.

Point-to-point send/recv through torch.distributed (NCCL on GPUs, gloo on CPUs). The loop that uses
them is the pipeline regime, ``edgetrgl/training/regimes/pipeline.py``.
"""

from __future__ import annotations

import collections

import torch
import torch.distributed as dist

_IN_FLIGHT = 2  # sends not yet completed before a rank waits: bounds the activations kept alive


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


def gather_to_main(items: list) -> list:
    """Concatenate every rank's list on rank 0, in rank order (other ranks get [])."""
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(items, gathered, dst=0)
    return [item for part in gathered for item in part] if gathered is not None else []
