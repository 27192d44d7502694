"""Decide where the activation cache goes when ``--cache auto``."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import psutil
import torch

from edgetrgl.cache import STORAGE_DTYPES
from edgetrgl.config import TrainConfig, format_bytes
from edgetrgl.modular import ModularNet


def cache_bytes_needed(cfg: TrainConfig, net: ModularNet, spec) -> int:
    """Bytes of the largest cache the run will hold: one module's outputs, train views + test set."""
    if net.num_modules < 2:
        return 0
    x = torch.zeros(1, *spec.input_shape)
    largest = 0
    with torch.no_grad():
        for k in range(net.num_modules - 1):
            stage = net.stages[k]
            was = stage.training
            stage.eval()
            x = stage(x)
            stage.train(was)
            largest = max(largest, math.prod(x.shape[1:]))
    views = cfg.cache_views if cfg.augment else 1
    return largest * (spec.num_train * views + spec.num_test) * STORAGE_DTYPES[cfg.cache_dtype].itemsize


def resolve_cache(cfg: TrainConfig, net: ModularNet, spec, cache_dir: Path | None) -> tuple[str, str]:
    """Return ``(mode, reason)``: the cache mode the run uses and why.

    ``auto`` picks host memory if the cache takes under half of the available RAM, else disk if
    the cache folder's file system has twice the room, else recomputing the prefix.
    """
    if cfg.regime not in ("sequential", "multilap"):
        return "none", f"the {cfg.regime} regime needs no cache"
    need = cache_bytes_needed(cfg, net, spec)
    if cfg.cache != "auto":
        if cfg.cache == "disk" and cache_dir is None:
            return "host", "no run folder for a disk cache: using host memory"
        return cfg.cache, f"requested ({format_bytes(need)} at most)"
    available = psutil.virtual_memory().available
    if cfg.budget is not None and cfg.device != "cuda" and not torch.cuda.is_available():
        # no separate accelerator memory (a CPU, or shared DRAM on a Jetson): the host cache
        # counts against the same budget as the module being trained
        available = min(available, cfg.budget)
    if need < available // 2:
        return "host", f"{format_bytes(need)} fits in host memory ({format_bytes(available)} available)"
    if cache_dir is not None:
        probe = cache_dir if cache_dir.exists() else cache_dir.parent
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if need * 2 < free:
            return "disk", f"{format_bytes(need)} too large for host memory; {format_bytes(free)} free on disk"
    return "none", f"{format_bytes(need)} fits neither host memory nor disk: recomputing the prefix"
