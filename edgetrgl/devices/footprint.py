"""The runtime's own footprint: memory the process holds before training touches a tensor.

A whole-process budget (shared-memory boards, CPU) must include what ``import torch``, the
package and the built model already hold. It is measured, not guessed, as this process's memory:

- ``anon_bytes`` (``RssAnon``): anonymous pages (heap, torch's allocations, the model). Without
  swap the kernel cannot reclaim them: this is the fixed cost a budget must subtract. A memory
  cgroup's peak for ``python -c "import torch"`` matches it (283 MiB against ``RssAnon`` 281 MiB
  here, with torch 2.14 on x86; RSS says 511 MiB).
- ``file_bytes`` (``RssFile``): mapped library pages (libtorch and friends). They count in RSS
  and in a cgroup only when this process first reads them, and the kernel drops them under
  pressure (re-reading them later from disk), so they are not a fixed cost.

    footprint = current_footprint()          # in the training process, after the model is built
    footprint = measure_runtime_footprint("resnet110", image_size=32)   # in a fresh interpreter
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

_STATUS_FIELDS = {"VmRSS": "rss_bytes", "RssAnon": "anon_bytes", "RssFile": "file_bytes", "RssShmem": "shmem_bytes"}


@dataclass(frozen=True)
class RuntimeFootprint:
    """This process's memory at one moment, in bytes (``anon_bytes`` is the fixed cost; see the module)."""

    rss_bytes: int
    anon_bytes: int
    file_bytes: int
    shmem_bytes: int = 0
    source: str = "/proc/self/status"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_footprint(status_path: str = "/proc/self/status") -> RuntimeFootprint:
    """This process's footprint now (call it after imports and model build).

    Reads ``/proc/self/status``; where that has no ``RssAnon`` (not Linux), psutil's RSS stands for
    all of it (``anon_bytes = rss_bytes``: an overestimate, the safe side for a budget).
    """
    values: dict[str, int] = {}
    try:
        with open(status_path) as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in _STATUS_FIELDS and rest.split():
                    values[_STATUS_FIELDS[key]] = int(rest.split()[0]) * 1024  # the kernel's "kB" are KiB
    except (OSError, ValueError):
        values = {}
    if "rss_bytes" in values and "anon_bytes" in values:
        return RuntimeFootprint(rss_bytes=values["rss_bytes"], anon_bytes=values["anon_bytes"],
                                file_bytes=values.get("file_bytes", 0), shmem_bytes=values.get("shmem_bytes", 0))
    import psutil

    rss = int(psutil.Process().memory_info().rss)
    return RuntimeFootprint(rss_bytes=rss, anon_bytes=rss, file_bytes=0, source="psutil (no RssAnon)")


def measure_runtime_footprint(model: str = "resnet20", *, in_channels: int = 3, num_classes: int = 10,
                              image_size: int = 32, model_options: dict[str, Any] | None = None,
                              device: str = "cpu", timeout_s: float = 300.0) -> RuntimeFootprint:
    """The footprint of a fresh interpreter after ``import torch``, ``import edgetrgl`` and building ``model``.

    Args:
        model: registered model name (see ``edgetrgl models``).
        in_channels, num_classes, image_size, model_options: as for ``create_model``.
        device: where the model is moved (``"cuda"`` adds the CUDA context, which on a Jetson is
            host memory too).
        timeout_s: seconds before the measuring process is killed.

    Raises:
        UserError: unknown model or bad options (the worker's one line).
        RuntimeError: the worker crashed or timed out.
    """
    from edgetrgl.memory.process import run_fresh

    payload = {"model": model, "in_channels": in_channels, "num_classes": num_classes, "image_size": image_size,
               "model_options": model_options or {}, "device": device}
    return RuntimeFootprint(**run_fresh("edgetrgl.devices._footprint_worker", payload, timeout=timeout_s))
