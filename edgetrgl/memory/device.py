"""Device-level memory: NVML on discrete GPUs, /proc/meminfo and tegrastats on Jetson, host RAM always.

On a Jetson the GPU is integrated and shares DRAM with the CPU: NVML reports no memory there, so
the figures that mean something are the host's ``MemAvailable`` and tegrastats' "RAM used".
Every reader here is defensive: a missing file, tool or library gives ``None``, never an error.
"""

from __future__ import annotations

import re
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

_JETSON_RELEASE = "/etc/nv_tegra_release"
_DEVICE_TREE_MODEL = "/proc/device-tree/model"
_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}  # tegrastats' "MB" are MiB
_TEGRA_RAM = re.compile(r"(?<![A-Za-z])RAM\s+(\d+)/(\d+)\s*([KMG]?B)", re.IGNORECASE)
_TEGRA_SWAP = re.compile(r"\bSWAP\s+(\d+)/(\d+)\s*([KMG]?B)", re.IGNORECASE)
_TEGRA_GPU = re.compile(r"\bGR3D_FREQ\s+(\d+)%")


def parse_meminfo(text: str) -> dict[str, int]:
    """Parse ``/proc/meminfo`` text into bytes per field (``{"MemAvailable": ..., ...}``).

    Lines that do not parse are skipped; values in ``kB`` (the kernel's KiB) become bytes.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
        values[key.strip()] = int(parts[0]) * scale
    return values


def host_memory(meminfo_path: str = "/proc/meminfo") -> dict[str, Any]:
    """Host RAM: ``total_bytes``, ``available_bytes`` and where they came from."""
    try:
        info = parse_meminfo(Path(meminfo_path).read_text())
        if "MemAvailable" in info:
            return {"total_bytes": info.get("MemTotal"), "available_bytes": info["MemAvailable"], "source": "/proc/meminfo"}
    except OSError:
        pass
    try:
        import psutil

        vm = psutil.virtual_memory()
        return {"total_bytes": int(vm.total), "available_bytes": int(vm.available), "source": "psutil"}
    except Exception:  # psutil missing or unsupported platform: report what we know, nothing
        return {"total_bytes": None, "available_bytes": None, "source": None}


def is_jetson(release_path: str = _JETSON_RELEASE, model_path: str = _DEVICE_TREE_MODEL) -> bool:
    """True on an NVIDIA Jetson (L4T release file, or a device-tree model naming one)."""
    if Path(release_path).exists():
        return True
    try:
        return "nvidia jetson" in Path(model_path).read_bytes().decode(errors="ignore").lower()
    except OSError:
        return False


def parse_tegrastats(line: str) -> dict[str, Any] | None:
    """Parse one tegrastats line; ``None`` if it has no RAM field.

    Returns:
        ``ram_used_bytes``, ``ram_total_bytes``, and where present ``swap_used_bytes``,
        ``swap_total_bytes`` and ``gpu_load_percent`` (GR3D_FREQ).
    """
    ram = _TEGRA_RAM.search(line)
    if ram is None:
        return None
    scale = _SIZE.get(ram.group(3).upper(), 1)
    result: dict[str, Any] = {"ram_used_bytes": int(ram.group(1)) * scale, "ram_total_bytes": int(ram.group(2)) * scale}
    swap = _TEGRA_SWAP.search(line)
    if swap is not None:
        scale = _SIZE.get(swap.group(3).upper(), 1)
        result.update(swap_used_bytes=int(swap.group(1)) * scale, swap_total_bytes=int(swap.group(2)) * scale)
    gpu = _TEGRA_GPU.search(line)
    if gpu is not None:
        result["gpu_load_percent"] = int(gpu.group(1))
    return result


def tegrastats_sample(timeout_s: float = 3.0) -> dict[str, Any] | None:
    """One tegrastats reading, or ``None`` if tegrastats is not on PATH or prints nothing parsable."""
    exe = shutil.which("tegrastats")
    if exe is None:
        return None
    try:
        proc = subprocess.Popen([exe, "--interval", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # tegrastats runs until killed: wait for a line without blocking past the deadline
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = proc.stdout.readline()
            if not line:
                break
            parsed = parse_tegrastats(line)
            if parsed is not None:
                return parsed
        return None
    finally:
        proc.kill()
        proc.wait()


def nvml_devices() -> list[dict[str, Any]] | None:
    """Memory of every GPU that NVML sees, or ``None`` without NVML (no driver, no GPU, no pynvml).

    Each entry: ``index``, ``name``, ``total_bytes``, ``used_bytes``, ``free_bytes`` (a field NVML
    will not give, as on Jetson, is ``None``).
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no NVML here
        return None
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            entry: dict[str, Any] = {"index": index, "name": None, "total_bytes": None, "used_bytes": None, "free_bytes": None}
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(handle)
                entry["name"] = name.decode() if isinstance(name, bytes) else str(name)
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                entry.update(total_bytes=int(mem.total), used_bytes=int(mem.used), free_bytes=int(mem.free))
            except Exception:  # NVMLError_NotSupported on integrated GPUs: keep what we got
                pass
            devices.append(entry)
        return devices
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def device_memory_snapshot() -> dict[str, Any]:
    """Whatever memory figures this machine offers, in bytes.

    Returns:
        ``host`` (always: total/available), ``nvml`` (list of GPUs or None), ``jetson`` (bool) and,
        on a Jetson, ``tegrastats`` (one sample or None).
    """
    snapshot: dict[str, Any] = {"host": host_memory(), "nvml": nvml_devices(), "jetson": is_jetson()}
    if snapshot["jetson"]:
        snapshot["tegrastats"] = tegrastats_sample()
    return snapshot
