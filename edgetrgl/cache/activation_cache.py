"""ActivationCache: the outputs of a finished module, kept in host memory or on disk.

The next module trains from these instead of recomputing the frozen prefix for every batch.
Layout: ``num_views`` views (augmented copies) of ``num_samples`` samples, split into shards of
``shard_size`` samples. On disk each shard is a raw file memory-mapped with ``torch.from_file``,
so reading a batch touches only the rows it needs.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Iterator

import torch

STORAGE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ActivationCache:
    """Module outputs for one dataset split.

    Args:
        num_samples: samples per view.
        num_views: augmented views stored (1 without augmentation).
        backend: ``"host"`` (RAM) or ``"disk"`` (memory-mapped shards under ``root``).
        storage_dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"``; batches are returned as float32.
        root: folder for the disk backend; created, and removed by :meth:`close`.
        shard_size: samples per shard.
    """

    def __init__(
        self,
        num_samples: int,
        num_views: int = 1,
        backend: str = "host",
        storage_dtype: str = "fp32",
        root: str | Path | None = None,
        shard_size: int = 4096,
    ) -> None:
        if backend not in ("host", "disk"):
            raise ValueError(f"backend must be 'host' or 'disk', got {backend!r}")
        if backend == "disk" and root is None:
            raise ValueError("the disk backend needs a root folder")
        self.num_samples = num_samples
        self.num_views = num_views
        self.backend = backend
        self.storage_dtype = STORAGE_DTYPES[storage_dtype]
        self.root = Path(root) if root is not None else None
        self.shard_size = shard_size
        self.feature_shape: tuple[int, ...] | None = None
        self.labels = torch.empty(num_samples, dtype=torch.int64)
        self._shards: list[list[torch.Tensor]] = [[] for _ in range(num_views)]  # [view][shard]
        self._filled = [0] * num_views
        if backend == "disk":
            self.root.mkdir(parents=True, exist_ok=True)

    # ---- writing -------------------------------------------------------------------------
    def append(self, view: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Append a batch of features (in dataset order) to ``view``."""
        if self.feature_shape is None:
            self.feature_shape = tuple(features.shape[1:])
            for v in range(self.num_views):
                self._shards[v] = [self._new_shard(v, s) for s in range(self.num_shards)]
        start, count = self._filled[view], features.shape[0]
        if start + count > self.num_samples:
            raise ValueError(f"view {view} overflows: {start + count} > {self.num_samples} samples")
        rows = features.detach().to("cpu", self.storage_dtype)
        done = 0
        while done < count:
            shard, offset = divmod(start + done, self.shard_size)
            take = min(count - done, self.shard_size - offset)
            self._shards[view][shard][offset:offset + take] = rows[done:done + take]
            done += take
        if view == 0:
            self.labels[start:start + count] = labels.cpu()
        self._filled[view] += count

    @property
    def complete(self) -> bool:
        return all(n == self.num_samples for n in self._filled)

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_samples / self.shard_size)

    @property
    def nbytes(self) -> int:
        """Bytes the cached features occupy (host RAM or disk)."""
        if self.feature_shape is None:
            return 0
        return self.num_views * self.num_samples * math.prod(self.feature_shape) * self.storage_dtype.itemsize

    def _shard_rows(self, shard: int) -> int:
        return min(self.shard_size, self.num_samples - shard * self.shard_size)

    def _new_shard(self, view: int, shard: int) -> torch.Tensor:
        shape = (self._shard_rows(shard), *self.feature_shape)
        if self.backend == "host":
            return torch.empty(shape, dtype=self.storage_dtype)
        path = self.root / f"view{view}_shard{shard}.bin"
        flat = torch.from_file(str(path), shared=True, size=math.prod(shape), dtype=self.storage_dtype)
        return flat.view(shape)

    # ---- reading -------------------------------------------------------------------------
    def gather(self, view: int, indices: torch.Tensor) -> torch.Tensor:
        """Rows ``indices`` of ``view`` as a float32 CPU tensor."""
        shard_ids = torch.div(indices, self.shard_size, rounding_mode="floor")
        out = torch.empty((indices.numel(), *self.feature_shape), dtype=self.storage_dtype)
        for shard in shard_ids.unique().tolist():
            where = (shard_ids == shard).nonzero(as_tuple=True)[0]
            out[where] = self._shards[view][shard][indices[where] - shard * self.shard_size]
        return out.float()

    def batches(self, batch_size: int, *, view: int = 0, order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(features float32, labels)`` CPU batches in ``order`` (default: dataset order)."""
        if not self.complete:
            raise RuntimeError("cache read before it was completely written")
        order = torch.arange(self.num_samples) if order is None else order
        for start in range(0, order.numel(), batch_size):
            idx = order[start:start + batch_size]
            yield self.gather(view, idx), self.labels[idx]

    def close(self) -> None:
        """Drop the cached features (and their files, for the disk backend)."""
        self._shards = [[] for _ in range(self.num_views)]
        self._filled = [0] * self.num_views
        if self.backend == "disk" and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
