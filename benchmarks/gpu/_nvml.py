"""NVML readings for the GPU validation: the GPU's facts, and a sampler of GPU memory during a child process.

The sampler runs on a thread of the *parent*: every measurement and training run is a child process
(a fresh interpreter), and the parent never creates a CUDA context of its own. Each sample reads

* ``nvmlDeviceGetComputeRunningProcesses``: the GPU memory of every process on the device; the ones
  whose pid is one of our children are summed (what nvidia-smi's per-process column shows: CUDA
  context, library workspaces and the caching allocator's reserved memory). In a container with its
  own pid namespace NVML reports host pids, nothing matches, and the reading is None;
* ``nvmlDeviceGetMemoryInfo().used``: the whole device, minus the reading taken just before the child
  started (meaningful on a GPU that nothing else uses: this benchmark's machine).

Sampling every 20 ms can miss a shorter spike; the caching allocator keeps what it reserved until
``empty_cache``, so a peak usually lasts far longer than that.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import psutil


class Nvml:
    """NVML on the GPU this benchmark uses, or ``available = False`` (no pynvml, no driver, no GPU)."""

    def __init__(self) -> None:
        self.available = False
        self.handle = None
        self.error: str | None = None
        try:
            import pynvml

            self.pynvml = pynvml
            pynvml.nvmlInit()
            self.handle = self._handle()
            self.available = True
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
            self.error = f"{type(exc).__name__}: {exc}"

    def _handle(self):
        """The device CUDA calls 0: the first entry of CUDA_VISIBLE_DEVICES (an index or a UUID)."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        if visible.startswith(("GPU-", "MIG-")):
            return self.pynvml.nvmlDeviceGetHandleByUUID(visible)
        return self.pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)

    def info(self) -> dict[str, Any]:
        """Name, total memory, driver and CUDA driver versions (None where NVML will not say)."""
        facts: dict[str, Any] = {"nvml": self.available, "nvml_error": self.error}
        if not self.available:
            return facts
        nv = self.pynvml
        for key, read in (("gpu", lambda: nv.nvmlDeviceGetName(self.handle)),
                          ("driver_version", nv.nvmlSystemGetDriverVersion),
                          ("cuda_driver_version", nv.nvmlSystemGetCudaDriverVersion),
                          ("gpu_total_bytes", lambda: nv.nvmlDeviceGetMemoryInfo(self.handle).total)):
            try:
                value = read()
                facts[key] = value.decode() if isinstance(value, bytes) else value
            except Exception:  # NVMLError_NotSupported and friends
                facts[key] = None
        version = facts.get("cuda_driver_version")
        if isinstance(version, int):  # 12040 -> "12.4"
            facts["cuda_driver_version"] = f"{version // 1000}.{version % 1000 // 10}"
        return facts

    def device_used(self) -> int | None:
        try:
            return int(self.pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        except Exception:
            return None

    def children_used(self) -> int | None:
        """GPU memory of this process's children as NVML lists them; None when none is listed."""
        try:
            procs = self.pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
            mine = {p.pid for p in psutil.Process().children(recursive=True)}
        except Exception:
            return None
        used = [p.usedGpuMemory for p in procs if p.pid in mine and p.usedGpuMemory is not None]
        return int(sum(used)) if used else None

    @contextmanager
    def watch(self, interval_s: float = 0.02) -> Iterator[dict[str, Any]]:
        """Sample while the block runs; the yielded dict is filled when it ends.

        Keys: ``nvml_process_peak_bytes`` (our children's peak, None without a pid match),
        ``nvml_device_used_before_bytes``, ``nvml_device_used_peak_bytes`` and
        ``nvml_device_delta_peak_bytes`` (peak minus before), ``nvml_samples``.
        """
        reading: dict[str, Any] = {}
        if not self.available:
            reading.update(nvml_process_peak_bytes=None, nvml_device_delta_peak_bytes=None)
            yield reading
            return
        stop = threading.Event()
        before = self.device_used()
        peaks: dict[str, int | None] = {"process": None, "device": before}
        count = [0]

        def sample() -> None:
            for key, value in (("process", self.children_used()), ("device", self.device_used())):
                if value is not None and (peaks[key] is None or value > peaks[key]):
                    peaks[key] = value
            count[0] += 1

        def loop() -> None:
            while not stop.is_set():
                sample()
                stop.wait(interval_s)

        thread = threading.Thread(target=loop, name="nvml-sampler", daemon=True)
        thread.start()
        try:
            yield reading
        finally:
            stop.set()
            thread.join(timeout=5)
            device = peaks["device"]
            reading.update(nvml_process_peak_bytes=peaks["process"], nvml_device_used_before_bytes=before,
                           nvml_device_used_peak_bytes=device,
                           nvml_device_delta_peak_bytes=device - before if device is not None and before is not None else None,
                           nvml_samples=count[0])

