"""What the planner needs to know about this machine, measured once by the caller and handed in.

``make_plan`` is a function of its arguments: it reads no free memory, no disk, no ``/proc`` and no
GPU. The run (``edgetrgl.training.run.plan_run``) calls :func:`measure_machine` once, just before
planning, and passes the facts in; a test passes made-up facts and gets the same plan every time.

    facts = measure_machine(cache_dir=Path("runs/x/cache"))
    plan, net = make_plan(cfg, spec, machine=facts, traits=traits)
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from edgetrgl.devices.footprint import current_footprint

BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX512-BF16 / AMX, Arm's BF16 extension (ARMv8.6)


@dataclass(frozen=True)
class MachineFacts:
    """This machine, at one moment.

    Attributes:
        free_ram_bytes: host memory available now (``MemAvailable``).
        free_disk_bytes: free space on the file system where a disk cache would go (None: no folder).
        cpu_name: the CPU's model name ("" where unknown).
        cpu_count: logical CPUs.
        cpu_native_bf16: bf16 arithmetic in hardware (AVX512-BF16 or AMX, Arm's BF16); not on a Pi 4's
            Cortex-A72 or a Pi 5's Cortex-A76.
        cuda_available: a CUDA GPU is present.
        device_name: the CUDA GPU's name (None without one).
        device_integrated: the GPU shares the host's DRAM (a Jetson).
        footprint_bytes: this process's anonymous memory when measured (the runtime's fixed cost).
    """

    free_ram_bytes: int
    free_disk_bytes: int | None
    cpu_name: str = ""
    cpu_count: int = 1
    cpu_native_bf16: bool = False
    cuda_available: bool = False
    device_name: str | None = None
    device_integrated: bool = False
    footprint_bytes: int = 0


def measure_machine(cache_dir: Path | None = None, device: str = "auto") -> MachineFacts:
    """Measure this machine once, for ``make_plan``.

    Args:
        cache_dir: where a disk cache would go (it may not exist yet: its nearest existing parent's file
            system is measured); None: the system's temporary folder, where a run without a folder caches.
        device: the run's ``--device``; the GPU is queried only when it may be used.
    """
    cpu_name, flags = _cpu_info()
    cuda = device != "cpu" and torch.cuda.is_available()
    name, integrated = None, False
    if cuda:
        index = torch.device(device).index if device not in ("auto", "cuda") else None
        index = torch.cuda.current_device() if index is None else index
        name = torch.cuda.get_device_name(index)
        integrated = bool(torch.cuda.get_device_properties(index).is_integrated)
    return MachineFacts(free_ram_bytes=int(psutil.virtual_memory().available),
                        free_disk_bytes=free_disk(cache_dir if cache_dir is not None else Path(tempfile.gettempdir())),
                        cpu_name=cpu_name, cpu_count=os.cpu_count() or 1, cpu_native_bf16=bool(flags & BF16_FLAGS),
                        cuda_available=cuda, device_name=name, device_integrated=integrated,
                        footprint_bytes=current_footprint().anon_bytes)


def free_disk(folder: Path) -> int | None:
    """Free bytes on the file system of ``folder`` or of its nearest existing parent."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return int(shutil.disk_usage(probe).free)
    except OSError:
        return None


def available_ram() -> int:
    """Host memory available now: what a cache that falls back from a full disk may count on."""
    return int(psutil.virtual_memory().available)


@functools.cache
def _cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """``(model name, feature flags)`` from ``/proc/cpuinfo`` (empty where it is missing)."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        return "", frozenset()
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and not name:
            name = value.strip()
        if key in ("flags", "Features"):
            flags.update(value.split())
    return name, frozenset(flags)
