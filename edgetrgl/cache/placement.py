"""Where the activation cache goes (host memory, disk, or nowhere: recompute the prefix), decided once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from edgetrgl.cache.activation_cache import STORAGE_DTYPES
from edgetrgl.config import format_bytes
from edgetrgl.modular import ModularNet


@dataclass
class CachePlan:
    """The resolved cache: what was asked, what the run uses and why.

    Attributes:
        requested: the user's ``--cache`` (``auto``, ``host``, ``disk`` or ``none``).
        mode: what the run uses: ``host``, ``disk`` or ``none`` (recompute the frozen prefix).
        dtype: storage dtype name (``fp32``, ``fp16``, ``bf16``).
        views: augmented views cached per training sample (1 without augmentation).
        folder: where a disk cache (and disk-offloaded modules) go; None without one.
        scratch: ``folder`` is a temporary folder of this run, removed at its end.
        keep: leave disk caches on disk at the end.
        bytes_needed: the largest cache the run holds (one module's outputs: train views + test set).
        reason: why ``mode`` was chosen.
        ram_limit: on memory shared with the compute device, the RAM a host cache may use at most
            (the budget less the module being trained); None: separate host RAM. A fallback to
            host memory later in the run (a full disk) respects it too.
    """

    requested: str
    mode: str
    dtype: str
    views: int
    folder: str | None
    scratch: bool
    keep: bool
    bytes_needed: int
    reason: str
    ram_limit: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CachePlan":
        return cls(**values)


def output_elements(net: ModularNet, input_shape: tuple[int, ...]) -> list[int]:
    """Elements per sample of the outputs of modules 1..K-1 (what their caches hold), probed on the CPU."""
    x, elements = torch.zeros(1, *input_shape), []
    with torch.no_grad():
        for stage in net.stages[:-1]:
            was = stage.training
            stage.eval()  # probing must not move BatchNorm running statistics
            x = stage(x)
            stage.train(was)
            elements.append(math.prod(x.shape[1:]))
    return elements


def cache_bytes_needed(net: ModularNet, input_shape: tuple[int, ...], num_samples: int, dtype: str) -> int:
    """Bytes of the largest cache: the outputs of one of modules 1..K-1 for ``num_samples`` samples,
    stored as ``dtype``."""
    if net.num_modules < 2:
        return 0
    return max(output_elements(net, input_shape)) * num_samples * STORAGE_DTYPES[dtype].itemsize


def host_cache_fits(need_bytes: int, available_bytes: int, ram_limit: int | None) -> bool:
    """The host-cache rule: a cache goes to host memory only if it takes under half of the RAM it may
    use (what is available, capped by the plan's ``ram_limit``); the other half is left for the run."""
    usable = available_bytes if ram_limit is None else min(available_bytes, ram_limit)
    return need_bytes < usable // 2


def plan_cache(*, requested: str, dtype: str, views: int, keep: bool, needs_cache: bool, net: ModularNet,
               input_shape: tuple[int, ...], num_train: int, num_test: int, folder: Path | None, scratch: bool,
               ram_limit: int | None, free_ram: int, free_disk: int | None) -> CachePlan:
    """Decide the cache for a run.

    ``auto`` picks host memory if :func:`host_cache_fits`, else disk if the folder's file system has
    twice the room, else recomputing the prefix. Measures nothing: the free RAM and disk come in. ``dtype="auto"``
    stores fp32 when that stays in host memory, else fp16 (half the RAM, or half the disk traffic).

    Args:
        requested: ``--cache``.
        dtype, views, keep: ``--cache-dtype``, the views actually cached, ``--keep-cache``.
        needs_cache: the regime reads cached outputs (sequential, multilap).
        net: the split network (probed on the CPU for each module's output size).
        input_shape: one sample's input shape.
        num_train, num_test: samples in each split.
        folder: the disk cache's folder (None with ``scratch``: a temporary folder the caller makes).
        scratch: the folder is temporary.
        ram_limit: on memory shared with the compute device, the part of the budget the module
            being trained leaves free; None when the cache lives in separate host RAM.
        free_ram: host memory available (measured by the caller).
        free_disk: free bytes where the disk cache would go; None: no folder for one.
    """
    if dtype == "auto":
        return _auto_dtype(requested=requested, views=views, keep=keep, needs_cache=needs_cache, net=net,
                           input_shape=input_shape, num_train=num_train, num_test=num_test, folder=folder,
                           scratch=scratch, ram_limit=ram_limit, free_ram=free_ram, free_disk=free_disk)

    def plan(mode: str, reason: str, need: int = 0) -> CachePlan:
        return CachePlan(requested, mode, dtype, views, str(folder) if folder is not None else None, scratch, keep,
                         need, reason, ram_limit)

    if not needs_cache:
        return CachePlan(requested, "none", dtype, views, None, False, keep, 0, "the regime needs no cache", ram_limit)
    need = cache_bytes_needed(net, input_shape, num_train * views + num_test, dtype)
    if requested != "auto":
        if requested == "disk" and folder is None and not scratch:
            return plan("host", "no folder for a disk cache: using host memory", need)
        return plan(requested, f"requested ({format_bytes(need)} at most)", need)
    available = free_ram if ram_limit is None else min(free_ram, ram_limit)
    if host_cache_fits(need, free_ram, ram_limit):
        return plan("host", f"{format_bytes(need)} fits in host memory ({format_bytes(available)} available)", need)
    if (folder is not None or scratch) and free_disk is not None and need * 2 < free_disk:
        return plan("disk", f"{format_bytes(need)} too large for host memory ({format_bytes(available)} available); "
                            f"{format_bytes(free_disk)} free on disk", need)
    return plan("none", f"{format_bytes(need)} fits neither host memory nor disk: recomputing the prefix", need)


def _auto_dtype(**options) -> CachePlan:
    """``--cache-dtype auto``: fp32 if the cache then lives in host memory; otherwise fp16, which
    halves it (it may then fit in RAM after all; on disk it halves the I/O). fp16 storage matched
    fp32's accuracy over three seeds (benchmarks/results/cache_dtype.md)."""
    full = plan_cache(dtype="fp32", **options)
    if full.mode == "host" or options["requested"] == "none":
        return full
    half = plan_cache(dtype="fp16", **options)
    half.reason = f"fp16 storage (fp32 would be {full.mode}: {full.reason}); {half.reason}"
    return half
