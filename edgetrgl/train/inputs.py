"""Where module k's training and test inputs come from in the sequential regimes.

Module 1 reads the dataset. Module k > 1 reads the outputs of the frozen modules before it, either

* from an :class:`ActivationCache` written once when module k-1 finished (``cache`` host/disk), or
* by recomputing the frozen prefix for every batch under ``no_grad`` (``cache none``).

With augmentation on, a cache stores ``cache_views`` augmented views of the training set and epoch e
reads view ``e % cache_views``; recomputing sees a fresh augmentation every epoch instead.
Both paths visit samples in the same order, so with augmentation off they give identical batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from edgetrgl.cache import ActivationCache, Prefetcher
from edgetrgl.data import make_loader
from edgetrgl.data._seeding import derive_seed

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
        batch_size, seed, augment: as in the config.
        device: the compute device.
        cache: ``host``, ``disk`` or ``none``.
        cache_dtype: ``fp32``, ``fp16`` or ``bf16``.
        cache_views: augmented views cached per training sample.
        cache_dir: folder for disk caches.
    """

    def __init__(self, stages: nn.ModuleList, train_set, test_set, *, batch_size: int, seed: int, augment: bool,
                 device: torch.device, cache: str = "host", cache_dtype: str = "fp32", cache_views: int = 1,
                 cache_dir: str | Path | None = None) -> None:
        self.stages = stages
        self.train_set, self.test_set = train_set, test_set
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.device = device
        self.mode = cache
        self.cache_dtype = cache_dtype
        self.views = cache_views if augment else 1
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._train_cache: ActivationCache | None = None  # outputs of the last finished module
        self._test_cache: ActivationCache | None = None
        self._cached_upto = -1  # index of the module whose outputs are cached
        self._generation = 0

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
        return iter(Prefetcher(self._train_cache.batches(self.batch_size, view=epoch % self.views, order=order), self.device))

    def test_batches(self, k: int) -> Batches:
        """Test-set inputs of module k (outputs of module k-1), in dataset order."""
        if k == 0 or self.mode == "none":
            loader = make_loader(self.test_set, self.batch_size, shuffle=False, augment=False, seed=self.seed)
            return self._through_prefix(k, loader)
        self._check_cached(k)
        return iter(Prefetcher(self._test_cache.batches(self.batch_size), self.device))

    @torch.no_grad()
    def module_done(self, k: int) -> None:
        """Module k is frozen: cache its outputs for module k+1 and drop the previous cache."""
        if self.mode == "none" or k == len(self.stages) - 1:
            self._drop()
            return
        stage = self.stages[k]
        stage.eval()
        train_cache = self._new_cache("train", len(self.train_set), self.views)
        for view in range(self.views):
            for x, y in self._view_inputs(k, view):
                train_cache.append(view, stage(x), y)
        test_cache = self._new_cache("test", len(self.test_set), 1)
        for x, y in self.test_batches(k):
            test_cache.append(0, stage(x), y)
        self._drop()
        self._train_cache, self._test_cache, self._cached_upto = train_cache, test_cache, k

    def reset(self) -> None:
        """Forget every cache (a new lap retrains module 1, so all outputs change)."""
        self._drop()

    def close(self) -> None:
        self._drop()

    @property
    def cache_bytes(self) -> int:
        return sum(c.nbytes for c in (self._train_cache, self._test_cache) if c is not None)

    # ---- internals -------------------------------------------------------------------------
    def _view_inputs(self, k: int, view: int) -> Batches:
        """Module k's inputs for one cached view, in dataset order."""
        if k == 0:
            loader = make_loader(self.train_set, self.batch_size, shuffle=False, augment=self.augment,
                                 seed=self.seed + _VIEW_SEED * (view + 1), epoch=0)
            return ((x.to(self.device), y.to(self.device)) for x, y in loader)
        self._check_cached(k)
        return iter(Prefetcher(self._train_cache.batches(self.batch_size, view=view), self.device))

    def _through_prefix(self, k: int, loader) -> Batches:
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if k > 0:
                with torch.no_grad():
                    for j in range(k):
                        self.stages[j].eval()  # frozen: BatchNorm uses its running statistics
                        x = self.stages[j](x)
            yield x, y

    def _check_cached(self, k: int) -> None:
        if self._cached_upto != k - 1:
            raise RuntimeError(f"module {k} needs the cached outputs of module {k - 1}, have {self._cached_upto}")

    def _new_cache(self, split: str, n: int, views: int) -> ActivationCache:
        self._generation += 1
        root = None
        if self.mode == "disk":
            root = self.cache_dir / f"{split}-{self._generation}"
        return ActivationCache(n, views, backend=self.mode, storage_dtype=self.cache_dtype, root=root)

    def _drop(self) -> None:
        for cache in (self._train_cache, self._test_cache):
            if cache is not None:
                cache.close()
        self._train_cache = self._test_cache = None
        self._cached_upto = -1
