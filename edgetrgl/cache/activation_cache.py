"""ActivationCache: the outputs of a finished module, kept in host memory or on disk.

The next module trains from these instead of recomputing the frozen prefix for every batch.
Layout: ``num_views`` views (augmented copies) of ``num_samples`` samples, split into shards of
``shard_size`` samples. On disk each shard is a raw file, written in order with ``pwrite`` (a full
disk raises ENOSPC at the write, where the caller falls back) while its CRC-32 is computed in the
same pass, and memory-mapped with ``torch.from_file`` once complete, so reading a batch touches only
the rows it needs. (The checksum used to be a blake2b of every shard read back after writing: CRC-32
in the write pass costs about a fifth of that here, and corruption, not an adversary, is what it
guards against.) A finished disk cache gets a ``manifest.json`` (shapes, dtype, counts, a checksum
per shard): :meth:`ActivationCache.open` trusts a cache only if every shard matches it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import zlib
from pathlib import Path
from typing import Any, Iterator

import torch

from edgetrgl._durable import fsync_dir, make_dirs, write_atomically
from edgetrgl._faults import crash_point

STORAGE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MANIFEST = "manifest.json"
FORMAT = "edgetrgl-cache/2"  # /1 checksummed with blake2b after writing; its caches are rebuilt, not reused


class CacheCorrupt(Exception):
    """A cache on disk does not match its manifest (truncated, altered, or never finished)."""


class ActivationCache:
    """Module outputs for one dataset split.

    Args:
        num_samples: samples per view.
        num_views: augmented views stored (1 without augmentation).
        backend: ``"host"`` (RAM) or ``"disk"`` (memory-mapped shards under ``root``).
        storage_dtype: ``"fp32"``, ``"fp16"`` or ``"bf16"``; batches are returned as float32.
        root: folder for the disk backend; created, and removed by :meth:`close`.
        shard_size: samples per shard.
        tag: free-form facts stored in the manifest (which module and lap wrote it).
    """

    def __init__(self, num_samples: int, num_views: int = 1, backend: str = "host", storage_dtype: str = "fp32",
                 root: str | Path | None = None, shard_size: int = 4096, tag: dict[str, Any] | None = None) -> None:
        if backend not in ("host", "disk"):
            raise ValueError(f"backend must be 'host' or 'disk', got {backend!r}")
        if backend == "disk" and root is None:
            raise ValueError("the disk backend needs a root folder")
        self.num_samples = num_samples
        self.num_views = num_views
        self.backend = backend
        self.dtype_name = storage_dtype
        self.storage_dtype = STORAGE_DTYPES[storage_dtype]
        self.root = Path(root) if root is not None else None
        self.shard_size = shard_size
        self.tag = dict(tag or {})
        self.feature_shape: tuple[int, ...] | None = None
        self.labels = torch.empty(num_samples, dtype=torch.int64)
        self._shards: list[list[torch.Tensor | None]] = [[] for _ in range(num_views)]  # [view][shard]; disk: mapped once written
        self._writers: dict[tuple[int, int], _ShardWriter] = {}  # disk: (view, shard) -> its open file, while written
        self._filled = [0] * num_views
        if backend == "disk":
            make_dirs(self.root)
            if (self.root / MANIFEST).exists():  # a cache being written is never trusted, even after a power cut
                (self.root / MANIFEST).unlink()
                fsync_dir(self.root)

    # ---- writing -------------------------------------------------------------------------
    def append(self, view: int, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Append a batch of features (in dataset order) to ``view``.

        Raises:
            OSError: ENOSPC when the disk cannot hold the cache (raised before anything is mapped).
        """
        if self.feature_shape is None:
            self.feature_shape = tuple(features.shape[1:])
            for v in range(self.num_views):
                self._shards[v] = [self._new_shard(v, s) for s in range(self.num_shards)]
        start, count = self._filled[view], features.shape[0]
        if start + count > self.num_samples:
            raise ValueError(f"view {view} overflows: {start + count} > {self.num_samples} samples")
        rows = features.detach().to("cpu", self.storage_dtype).contiguous()
        done = 0
        while done < count:
            shard, offset = divmod(start + done, self.shard_size)
            take = min(count - done, self.shard_size - offset)
            if self.backend == "disk":
                writer = self._writers[(view, shard)]
                writer.write(rows[done:done + take], offset)
                if offset + take == self._shard_rows(shard):  # complete: readable through a map from now on
                    self._shards[view][shard] = self._map(view, shard)
            else:
                self._shards[view][shard][offset:offset + take] = rows[done:done + take]
            done += take
        if view == 0:
            self.labels[start:start + count] = labels.cpu()
        self._filled[view] += count
        crash_point("cache_write")

    def finish(self) -> None:
        """Seal a disk cache: flush its shards, then write its manifest (with a checksum per shard) atomically.

        Each shard is fsync'd before the manifest that vouches for it, so a power cut never leaves a
        manifest over shards that did not reach the disk.
        """
        if self.backend != "disk" or not self.complete:
            return
        shards = []
        for v in range(self.num_views):
            for s in range(self.num_shards):
                writer = self._writers.pop((v, s))
                writer.seal()
                shards.append({"file": self._shard_path(v, s).name, "view": v, "rows": self._shard_rows(s),
                               "bytes": writer.size, "crc32": writer.crc})
        write_atomically(self.root / "labels.pt", lambda fh: torch.save(self.labels, fh))
        manifest = {"format": FORMAT, "num_samples": self.num_samples, "num_views": self.num_views,
                    "feature_shape": list(self.feature_shape), "dtype": self.dtype_name, "shard_size": self.shard_size,
                    "labels_crc32": _checksum(self.root / "labels.pt"), "shards": shards, "tag": self.tag}
        write_atomically(self.root / MANIFEST, json.dumps(manifest, indent=1).encode())

    @classmethod
    def open(cls, root: str | Path, tag: dict[str, Any] | None = None) -> "ActivationCache":
        """Reopen a sealed disk cache after checking every shard against the manifest.

        Raises:
            CacheCorrupt: no manifest, another tag, a missing, truncated or altered shard.
        """
        root = Path(root)
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError):
            raise CacheCorrupt(f"{root}: no readable manifest (the cache was never finished)") from None
        if manifest.get("format") != FORMAT:
            raise CacheCorrupt(f"{root}: format {manifest.get('format')}, not {FORMAT}")
        if tag is not None and manifest.get("tag") != tag:
            raise CacheCorrupt(f"{root}: written for {manifest.get('tag')}, not {tag}")
        for shard in manifest["shards"]:
            path = root / shard["file"]
            if not path.exists() or path.stat().st_size != shard["bytes"] or _checksum(path) != shard["crc32"]:
                raise CacheCorrupt(f"{path}: missing, truncated or altered")
        if _checksum(root / "labels.pt") != manifest["labels_crc32"]:
            raise CacheCorrupt(f"{root / 'labels.pt'}: altered")
        cache = cls(manifest["num_samples"], manifest["num_views"], "disk", manifest["dtype"], root,
                    manifest["shard_size"], manifest["tag"])
        cache.feature_shape = tuple(manifest["feature_shape"])
        cache.labels = torch.load(root / "labels.pt", weights_only=True)
        cache._shards = [[cache._map(v, s) for s in range(cache.num_shards)] for v in range(cache.num_views)]
        cache._filled = [cache.num_samples] * cache.num_views
        write_atomically(root / MANIFEST, json.dumps(manifest, indent=1).encode())  # __init__ removed it; still valid
        return cache

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

    def _shard_path(self, view: int, shard: int) -> Path:
        return self.root / f"view{view}_shard{shard}.bin"

    def _new_shard(self, view: int, shard: int) -> torch.Tensor | None:
        shape = (self._shard_rows(shard), *self.feature_shape)
        if self.backend == "host":
            return torch.empty(shape, dtype=self.storage_dtype)
        row_bytes = math.prod(self.feature_shape) * self.storage_dtype.itemsize
        self._writers[(view, shard)] = _ShardWriter(self._shard_path(view, shard), row_bytes)
        return None  # mapped by append(), once its last row is written

    def _map(self, view: int, shard: int) -> torch.Tensor:
        shape = (self._shard_rows(shard), *self.feature_shape)
        flat = torch.from_file(str(self._shard_path(view, shard)), shared=True, size=math.prod(shape),
                               dtype=self.storage_dtype)
        return flat.view(shape)

    # ---- reading -------------------------------------------------------------------------
    def gather(self, view: int, indices: torch.Tensor, *, pin: bool = False, as_float: bool = True) -> torch.Tensor:
        """Rows ``indices`` of ``view`` as a CPU tensor: float32, or with ``as_float=False`` in the storage
        dtype (a CUDA feed converts on the device: half the bytes to copy). ``pin``: gathered straight
        into page-locked memory (needs a CUDA driver), the staging buffer of a non-blocking copy."""
        shard_ids = torch.div(indices, self.shard_size, rounding_mode="floor")
        out = torch.empty((indices.numel(), *self.feature_shape), dtype=self.storage_dtype, pin_memory=pin)
        for shard in shard_ids.unique().tolist():
            where = (shard_ids == shard).nonzero(as_tuple=True)[0]
            out[where] = self._shards[view][shard][indices[where] - shard * self.shard_size]
        return out.float() if as_float else out

    def batches(self, batch_size: int, *, view: int = 0, order: torch.Tensor | None = None, pin: bool = False,
                as_float: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(features, labels)`` CPU batches in ``order`` (default: dataset order); features are
        float32 unless ``as_float=False``, both in pinned memory with ``pin`` (see :meth:`gather`)."""
        if not self.complete:
            raise RuntimeError("cache read before it was completely written")
        order = torch.arange(self.num_samples) if order is None else order
        for start in range(0, order.numel(), batch_size):
            idx = order[start:start + batch_size]
            labels = torch.empty(idx.numel(), dtype=self.labels.dtype, pin_memory=pin)
            torch.index_select(self.labels, 0, idx, out=labels)
            yield self.gather(view, idx, pin=pin, as_float=as_float), labels

    def close(self, keep: bool = False) -> None:
        """Drop the cached features; a disk cache's files are deleted unless ``keep``."""
        self._shards = [[] for _ in range(self.num_views)]
        self._filled = [0] * self.num_views
        for writer in self._writers.values():
            writer.abandon()
        self._writers = {}
        if self.backend == "disk" and self.root is not None and not keep:
            shutil.rmtree(self.root, ignore_errors=True)


class _ShardWriter:
    """One shard's file while it is written: rows land in order (``pwrite`` at their offset), their
    CRC-32 computed from the same bytes, so sealing reads nothing back."""

    def __init__(self, path: Path, row_bytes: int) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.row_bytes, self.size, self._crc = row_bytes, 0, 0

    def write(self, rows: torch.Tensor, first_row: int) -> None:
        offset = first_row * self.row_bytes
        if offset != self.size:
            raise ValueError(f"shard rows out of order: row {first_row} after {self.size // self.row_bytes}")
        data = memoryview(rows.view(torch.uint8).numpy()).cast("B")  # the rows' bytes, no copy
        done = 0
        while done < len(data):  # a short write (a disk filling up) is followed by ENOSPC on the next one
            written = os.pwrite(self.fd, data[done:], offset + done)
            if written == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done += written
        self._crc = zlib.crc32(data, self._crc)
        self.size += len(data)

    @property
    def crc(self) -> str:
        return f"{self._crc:08x}"

    def seal(self) -> None:
        """fsync and close: the bytes are on the disk before any manifest names them."""
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1

    def abandon(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _checksum(path: Path) -> str:
    crc = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"
