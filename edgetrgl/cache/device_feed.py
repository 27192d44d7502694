"""Serving a cache's batches to the step's device: on CUDA, pinned host memory and non-blocking copies on a
side stream, one batch ahead, so the copy of batch t+1 runs while batch t trains.

    for x, y in feed(cache, 64, torch.device("cuda"), order=order):   # x float32 on the GPU
        local_step(stage, head, optimizer, x, y, ...)

Two threads of work overlap the step. A host thread (:class:`~edgetrgl.cache.prefetch.Prefetcher`)
gathers the rows of the next batches from RAM or from the memory-mapped disk shards straight into
page-locked staging memory, in the storage dtype. The consumer's thread issues each batch's copy
to the device on a side stream one batch ahead, and converts it to float32 there. Two stream rules
keep the result bit-identical to a plain blocking copy:

* before batch t is handed to the step, the step's stream waits for the side stream
  (``wait_stream``), and only then is the copy of t+1 queued on it, so the wait covers batch t alone;
* each batch is marked as used by the step's stream (``record_stream``): the caching allocator, which
  filed its memory under the side stream, reuses it only after the step's kernels that read it ran.

The pinned staging buffers come from torch's caching host allocator, which records an event with
every copy out of one and hands the buffer out again only once that copy is done.

Pinning needs a CUDA driver, so the pinned path is CUDA-only; elsewhere ``feed`` serves the plain
prefetcher (a host cache on the CPU, or a disk cache still in the page cache: inline). :data:`FEED` chooses the path: the parity tests and
benchmarks/gpu set it to compare the two.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Iterable, Iterator

import torch

from edgetrgl.cache.prefetch import DEPTH, Prefetcher, prefetch_depth

# "auto": the side-stream feed on CUDA, the plain prefetcher elsewhere; "stream": the side-stream feed
# on every device (the CPU has no streams nor pinning: the one-ahead order and the late float32
# conversion only, which the parity tests compare with "plain"); "plain": the thread's blocking copies
FEED = "auto"
FEEDS = ("auto", "stream", "plain")


def feed(cache, batch_size: int, device: torch.device | str, *, view: int = 0,
         order: torch.Tensor | None = None, in_page_cache: bool = False) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``cache`` (an :class:`~edgetrgl.cache.ActivationCache`) in ``order``, float32 on ``device``.

    Args:
        cache: a complete cache (host or disk).
        batch_size: samples per batch (the last may be smaller).
        device: the step's device.
        view: the augmented view to read.
        order: sample order (default: dataset order).
        in_page_cache: a disk cache's files are likely still in RAM: on the CPU it is then read inline,
            like a host cache (see ``prefetch_depth``).

    Returns:
        An iterable of ``(features float32, labels int64)`` on ``device``; iterate it once.
    """
    device = torch.device(device)
    if FEED not in FEEDS:
        raise ValueError(f"edgetrgl.cache.device_feed.FEED must be one of {FEEDS}, got {FEED!r}")
    stream = FEED == "stream" or (FEED == "auto" and device.type == "cuda")
    if not stream:
        return Prefetcher(cache.batches(batch_size, view=view, order=order), device,
                          depth=prefetch_depth(device, cache.backend, in_page_cache=in_page_cache))
    pin = device.type == "cuda"
    host = cache.batches(batch_size, view=view, order=order, pin=pin, as_float=False)
    # the host thread gathers ahead where there is latency to hide (a copy to the GPU, a disk read)
    return StreamFeed(Prefetcher(host, "cpu", depth=DEPTH if pin else prefetch_depth(device, cache.backend)), device)


def device_batches_ahead(device: torch.device | str, backend: str) -> int:
    """Input batches on ``device`` beside the one the step holds, as ``feed`` serves ``backend``'s cache
    under the default :data:`FEED`: one on CUDA (the next batch's copy); on the CPU whatever the
    prefetcher holds (its queue and the batch being gathered)."""
    device = torch.device(device)
    if device.type == "cuda":
        return 1
    depth = prefetch_depth(device, backend)
    return depth + 1 if depth else 0


class StreamFeed:
    """Move host batches to ``device`` one batch ahead; on CUDA the copies run on a side stream.

    Host batches are ``(features, labels)``, features in any floating dtype (converted to float32 on
    the device, after the copy); on CUDA they should be pinned, or the copies block.
    """

    def __init__(self, host_batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str) -> None:
        self.host_batches = host_batches
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cuda = self.device.type == "cuda"
        compute = torch.cuda.current_stream(self.device) if cuda else None
        side = torch.cuda.Stream(self.device) if cuda else None
        host = iter(self.host_batches)
        try:
            ahead = self._issue(next(host, None), side)
            while ahead is not None:
                current = ahead
                if cuda:
                    compute.wait_stream(side)  # batch t's copy, the only one queued: t+1's comes after
                    for tensor in current:
                        tensor.record_stream(compute)  # freed, its memory waits for the step's kernels
                ahead = self._issue(next(host, None), side)  # t+1's copy overlaps t's step
                yield current
        finally:
            close = getattr(host, "close", None)
            if close is not None:  # stop the host thread when the consumer stops early
                close()

    def _issue(self, batch: tuple[torch.Tensor, torch.Tensor] | None,
               side: torch.cuda.Stream | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        if batch is None:
            return None
        x, y = batch
        with torch.cuda.stream(side) if side is not None else nullcontext():
            return x.to(self.device, non_blocking=True).float(), y.to(self.device, non_blocking=True)
