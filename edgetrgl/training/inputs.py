"""Where module k's training and test inputs come from in the sequential regimes.

Module 1 reads the dataset. Module k > 1 reads the outputs of the frozen modules before it, either

* from an :class:`ActivationCache` written once when module k-1 finished (``cache`` host/disk), or
* by recomputing the frozen prefix for every batch under ``no_grad`` (``cache none``).

With augmentation on, a cache stores ``cache_views`` augmented views of the training set and epoch e
reads view ``e % cache_views``; recomputing sees a fresh augmentation every epoch instead.
Both paths visit samples in the same order, so with augmentation off they give identical batches.

The evaluation splits (the test set, and the validation part held out of the training set) go
through the frozen modules in eval mode without augmentation, and are cached beside the training
inputs: never drawn from the training cache, whose views are augmented.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from edgetrgl._faults import crash_point
from edgetrgl.cache import ActivationCache
from edgetrgl.cache.device_feed import feed
from edgetrgl.cache.activation_cache import CacheCorrupt
from edgetrgl.config import format_bytes
from edgetrgl.data import make_loader
from edgetrgl.data._seeding import derive_seed
from edgetrgl.cache.placement import CachePlan, host_cache_fits
from edgetrgl.cache.prefetch import likely_in_page_cache
from edgetrgl.devices.machine import available_ram
from edgetrgl.step import count_correct

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]

# seed offset for the augmented views a cache stores, so they differ from the epochs' own draws
_VIEW_SEED = 7919


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order ``make_loader(shuffle=True, seed, epoch)`` visits, so both paths agree."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch)))


class ModuleInputs:
    """Serves batches to the module being trained, and keeps the cache of the last finished one.

    Args:
        stages: all K modules (frozen ones are read, never trained, here).
        train_set, test_set: the datasets.
        val_set: the validation part held out of the training set, or None.
        cache: the run plan's cache decision (mode, dtype, views, folder, keep, size).
        batch_size, seed, augment: as in the config.
        device: the compute device.
        warn: where warnings go (a full disk, a corrupt cache).
        on_recompute: called when a full disk forces recomputing the prefix: the frozen modules
            must then stay on the compute device (the offloader's job, not this class's).
        micro_batch: the plan's micro-batch, or None. Frozen modules then run on chunks of this
            size too (filling a cache, recomputing the prefix), so no pass over the data holds more
            activations than a training step; on a CPU, small chunks that stay in cache are also
            faster than a whole batch (ResNet-20's first module fills in half the time at 16).
    """

    def __init__(self, stages: nn.ModuleList, train_set, test_set, cache: CachePlan, *, batch_size: int, seed: int,
                 augment: bool, device: torch.device, warn: Callable[[str], None] = lambda message: None,
                 on_recompute: Callable[[], None] = lambda: None, val_set=None, micro_batch: int | None = None) -> None:
        self.stages = stages
        self.micro_batch = micro_batch
        self.train_set, self.test_set = train_set, test_set
        # the splits a finished module's head is scored on, each cached for the next module
        self.eval_sets = {"test": test_set, **({"val": val_set} if val_set is not None else {})}
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.device = device
        self.plan = cache
        self.mode = cache.mode
        self.cache_dtype = cache.dtype
        self.views = cache.views
        self.cache_dir = Path(cache.folder) if cache.folder is not None else None
        self.keep, self.warn, self.on_recompute = cache.keep, warn, on_recompute
        self.lap = 0
        self._train_cache: ActivationCache | None = None  # outputs of the last finished module
        self._eval_caches: dict[str, ActivationCache] = {}  # split -> outputs of the last finished module
        self._cached_upto = -1  # index of the module whose outputs are cached

    @property
    def description(self) -> str:
        if self.mode == "none":
            return "recompute the frozen prefix every batch" + (" (fresh augmentation each epoch)" if self.augment else "")
        views = f", {self.views} augmented view(s) of the training set" if self.augment else ""
        return f"{self.mode} cache, {self.cache_dtype}{views}"

    # ---- what the training loop calls -------------------------------------------------------
    def train_batches(self, k: int, epoch: int) -> Batches:
        """Shuffled training batches for module k in ``epoch``, on the compute device."""
        if k == 0 or self.mode == "none":
            loader = make_loader(self.train_set, self.batch_size, shuffle=True, augment=self.augment,
                                 seed=self.seed, epoch=epoch)
            return self._through_prefix(k, loader)
        self._check_cached(k)
        order = epoch_order(len(self.train_set), self.seed, epoch)
        return iter(self._prefetch(self._train_cache, view=epoch % self.views, order=order))

    def eval_batches(self, k: int, split: str = "test") -> Batches:
        """Inputs of module k (outputs of module k-1) on an evaluation split (``test``, ``val``), in
        dataset order, never augmented."""
        if k == 0 or self.mode == "none":
            loader = make_loader(self.eval_sets[split], self.batch_size, shuffle=False, augment=False, seed=self.seed)
            return self._through_prefix(k, loader)
        self._check_cached(k)
        return iter(self._prefetch(self._eval_caches[split]))

    def fills_cache(self, k: int) -> bool:
        """Will :meth:`module_done` cache module k's outputs (and so can score its head in passing)?"""
        return self.mode != "none" and k < len(self.stages) - 1

    @torch.no_grad()
    def module_done(self, k: int, head: nn.Module | None = None) -> dict[str, float | None] | None:
        """Module k is frozen: cache its outputs for module k+1 and drop the previous cache.

        With ``head``, its accuracy on each evaluation split is measured on the outputs as they are
        cached: each split goes through module k once, not once to evaluate and once more to cache.
        Returns ``{split: accuracy}`` (None accuracies without ``head``), or None when nothing was
        cached (see :meth:`fills_cache`).
        """
        if not self.fills_cache(k):
            self._drop()
            return None
        stage = self.stages[k]
        stage.eval()
        scores = {split: _HeadScore(head) for split in self.eval_sets}
        filled: list[ActivationCache] = []
        try:
            train_cache = self._fill("train", k, self.views, lambda view: self._view_inputs(k, view), stage)
            filled.append(train_cache)
            eval_caches = {}
            for split in self.eval_sets:
                eval_caches[split] = self._fill(split, k, 1, lambda view, split=split: self.eval_batches(k, split),
                                                stage, observe=scores[split].add)
                filled.append(eval_caches[split])
        except OSError as exc:
            for cache in filled:
                cache.close()
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or self.mode != "disk":
                raise
            self._fall_back(k)
            return self.module_done(k, head)
        self._drop()
        self._train_cache, self._eval_caches, self._cached_upto = train_cache, eval_caches, k
        return {split: score.accuracy for split, score in scores.items()}

    def reset(self, lap: int = 0) -> None:
        """Forget every cache (a new lap retrains module 1, so all outputs change)."""
        self._drop()
        self.lap = lap

    def close(self) -> None:
        self._drop()

    @property
    def cache_bytes(self) -> int:
        return sum(c.nbytes for c in (self._train_cache, *self._eval_caches.values()) if c is not None)

    # ---- internals -------------------------------------------------------------------------
    def _fill(self, split: str, k: int, views: int, source, stage, observe=None) -> ActivationCache:
        n = len(self.train_set) if split == "train" else len(self.eval_sets[split])
        cache = ActivationCache(n, views, backend=self.mode, storage_dtype=self.cache_dtype,
                                root=self._cache_root(split, k), tag=self._tag(split, k))
        try:
            chunk = self.micro_batch or self.batch_size
            for view in range(views):
                for x, y in source(view):
                    for start in range(0, x.shape[0], chunk):
                        out, labels = stage(x[start:start + chunk]), y[start:start + chunk]
                        cache.append(view, out, labels)
                        if observe is not None:
                            observe(out, labels)
            cache.finish()
        except BaseException:
            cache.close()
            raise
        return cache

    def try_reuse(self, k: int) -> bool:
        """Adopt a sealed disk cache of module k's outputs left by an interrupted run (resume).

        Every shard is checked against the manifest; a truncated or altered one is never used: the
        caller rebuilds the cache instead.
        """
        try:
            train = ActivationCache.open(self._cache_root("train", k), self._tag("train", k))
            evals = {split: ActivationCache.open(self._cache_root(split, k), self._tag(split, k))
                     for split in self.eval_sets}
        except CacheCorrupt as exc:
            if self._cache_root("train", k).exists():
                self.warn(f"cache of module {k + 1} not reused ({exc}): rebuilding it")
            return False
        self._drop()
        self._train_cache, self._eval_caches, self._cached_upto = train, evals, k
        return True

    def _fall_back(self, k: int) -> None:
        """The disk is full: keep the cache in host memory if it fits there by the plan's rule
        (:func:`host_cache_fits`, with the RAM available now), else recompute the prefix."""
        need = self.plan.bytes_needed
        if host_cache_fits(need, available_ram(), self.plan.ram_limit):
            self.mode = "host"
        else:
            self.mode = "none"
            self.on_recompute()
        self.warn(f"disk full while writing the cache of module {k + 1} ({format_bytes(need)} needed): "
                  f"falling back to {self.description}")

    def _view_inputs(self, k: int, view: int) -> Batches:
        """Module k's inputs for one cached view, in dataset order."""
        if k == 0:
            loader = make_loader(self.train_set, self.batch_size, shuffle=False, augment=self.augment,
                                 seed=self.seed + _VIEW_SEED * (view + 1), epoch=0)
            return ((x.to(self.device), y.to(self.device)) for x, y in loader)
        self._check_cached(k)
        return iter(self._prefetch(self._train_cache, view=view))

    def _prefetch(self, cache: ActivationCache, **which):
        # a disk cache just written is read like a host cache while its files are likely still in RAM
        in_ram = cache.backend == "disk" and likely_in_page_cache(cache.nbytes, available_ram())
        return feed(cache, self.batch_size, self.device, in_page_cache=in_ram, **which)  # on CUDA: pinned, side stream

    def _through_prefix(self, k: int, loader) -> Batches:
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if k > 0:
                with torch.no_grad():
                    for j in range(k):
                        self.stages[j].eval()  # frozen: BatchNorm uses its running statistics
                    x = frozen_forward(self.stages[:k], x, self.micro_batch)
            yield x, y

    def _check_cached(self, k: int) -> None:
        if self._cached_upto != k - 1:
            raise RuntimeError(f"module {k} needs the cached outputs of module {k - 1}, have {self._cached_upto}")

    def _cache_root(self, split: str, k: int) -> Path | None:
        if self.mode != "disk":
            return None
        return self.cache_dir / f"lap{self.lap + 1}-module{k + 1}-{split}"

    def _tag(self, split: str, k: int) -> dict:
        return {"lap": self.lap, "module": k, "split": split, "views": self.views if split == "train" else 1,
                "seed": self.seed, "batch_size": self.batch_size}

    def _drop(self) -> None:
        """Release the current cache; its files go too, unless the user asked to keep caches."""
        for cache in (self._train_cache, *self._eval_caches.values()):
            if cache is not None:
                cache.close(keep=self.keep)
        self._train_cache, self._eval_caches = None, {}
        self._cached_upto = -1


def frozen_forward(stages, x: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """``x`` through the frozen ``stages`` in turn, ``chunk`` samples at a time (None: all at once):
    the same rows a cache fill at that chunk writes, so both paths give the same batches."""
    if chunk is None or chunk >= x.shape[0]:
        for stage in stages:
            x = stage(x)
        return x
    out = None
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk]
        for stage in stages:
            part = stage(part)
        if out is None:
            out = part.new_empty((x.shape[0], *part.shape[1:]))
        out[start:start + part.shape[0]] = part
    return out


class _HeadScore:
    """Counts a head's correct predictions on the outputs passing through a cache fill."""

    def __init__(self, head: nn.Module | None) -> None:
        self.head, self.correct, self.total = head, 0, 0
        if head is not None:
            head.eval()

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.head is not None:
            self.correct += count_correct(self.head(features), labels)
            self.total += labels.numel()
            crash_point("evaluate")

    @property
    def accuracy(self) -> float | None:
        return self.correct / max(self.total, 1) if self.head is not None else None
