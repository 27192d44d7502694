"""Prefetcher: prepares the next batches on a background thread while the current one trains."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import torch

_DONE = object()
DEPTH = 2  # batches ready ahead of the one training (the whole-process estimate counts them)


class Prefetcher:
    """Iterate ``batches`` on a thread, ``depth`` batches ahead, moving them to ``device`` (``depth=0``:
    inline, on the caller's thread).

    On CUDA the batch is pinned and copied with ``non_blocking=True`` so the copy overlaps compute.
    Gathering rows from a memory-mapped cache releases the GIL, so the thread really runs ahead.
    """

    def __init__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device, depth: int = DEPTH) -> None:
        self.batches = batches
        self.device = torch.device(device)
        self.depth = depth

    def _move(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.depth == 0:  # inline: nothing to overlap (see ``prefetch_depth``)
            yield from (self._move(x, y) for x, y in self.batches)
            return
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def produce() -> None:
            try:
                for x, y in self.batches:
                    if stop.is_set():
                        return
                    q.put(self._move(x, y))
                q.put(_DONE)
            except BaseException as exc:  # surface errors in the consumer, with their traceback
                q.put(exc)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.01)


def prefetch_depth(device: torch.device | str, backend: str, in_page_cache: bool = False) -> int:
    """Batches to prepare ahead: 2 where a thread hides latency (reading a disk cache, host-to-device
    copies), 0 for a host cache feeding the CPU, where gathering rows takes microseconds and a
    second thread would only take cycles from the step's own OpenMP threads. A disk cache whose
    files are still in the kernel's page cache (``in_page_cache``) reads like a host cache: on the
    CPU it is served inline too (measured: the thread cost 7% of a sequential run's CPU time,
    ResNet-20 on micro-batches of 16, one torch thread, benchmarks/tight_budget_speed.py)."""
    if torch.device(device).type == "cpu" and (backend == "host" or in_page_cache):
        return 0
    return DEPTH


def likely_in_page_cache(nbytes: int, available: int) -> bool:
    """Are a just-written cache's ``nbytes`` of files probably still in the page cache? Yes while they
    would take at most half the RAM available now: the kernel then has no reason to drop them
    (available RAM counts reclaimable file pages, so the margin is wide on purpose)."""
    return 2 * nbytes <= available
