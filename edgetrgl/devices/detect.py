"""Which board is this, and how much memory does it have free right now?

Identification reads files only, under a ``root`` folder (``/`` on a real machine; a ``tmp_path``
in tests, which fakes a Jetson or a Pi by writing the same files):

- Jetson: ``etc/nv_tegra_release`` exists, or ``proc/device-tree/model`` names an "NVIDIA Jetson";
- Raspberry Pi: ``proc/device-tree/model`` is e.g. "Raspberry Pi 4 Model B Rev 1.4";
- the board's profile is then chosen by the model string and ``MemTotal`` from ``proc/meminfo``;
- anything else is the generic ``cuda`` profile if a CUDA GPU is present, else ``cpu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgetrgl.devices.profile import DeviceProfile
from edgetrgl.devices.registry import get_profile, list_profiles
from edgetrgl.memory.device import host_memory, is_jetson, nvml_devices, parse_meminfo, tegrastats_sample

# Linux sees less than the DRAM on the box (firmware, GPU and kernel carve-outs: a 4 GiB Jetson Nano
# shows about 3.9 GiB, a 2 GiB Pi 4 about 1.8 GiB); a MemTotal between these fractions of a profile's
# memory is that profile. Below, it is a smaller board we have no profile for.
_MIN_SEEN, _MAX_SEEN = 0.80, 1.02


@dataclass(frozen=True)
class Detection:
    """The result of :func:`detect`.

    Attributes:
        profile: the matching profile (a generic one when the board is not recognised).
        board: the device-tree model string, or ``None`` when there is none.
        jetson: whether the machine is a Jetson.
        mem_total_bytes: ``MemTotal`` from ``/proc/meminfo`` (``None`` if unreadable).
        reason: one line saying why this profile was chosen.
    """

    profile: DeviceProfile
    board: str | None
    jetson: bool
    mem_total_bytes: int | None
    reason: str


def read_board_model(root: str | Path = "/") -> str | None:
    """The device-tree model string ("Raspberry Pi 4 Model B Rev 1.4"), or ``None``."""
    try:
        text = (Path(root) / "proc/device-tree/model").read_bytes().decode(errors="ignore")
    except OSError:
        return None
    return text.replace("\x00", "").strip() or None  # the kernel's string ends with a NUL byte


def detect(root: str | Path = "/", *, cuda_available: Callable[[], bool] | None = None) -> Detection:
    """Identify this machine and map it to a device profile.

    Args:
        root: folder that holds ``proc/`` and ``etc/`` (``/`` on a real machine).
        cuda_available: says whether a CUDA GPU is present (default ``torch.cuda.is_available``);
            only asked when no board profile matches.

    Returns:
        A :class:`Detection` (never raises for an unknown machine: it falls back to a generic profile).
    """
    root = Path(root)
    board = read_board_model(root)
    jetson = is_jetson(str(root / "etc/nv_tegra_release"), str(root / "proc/device-tree/model"))
    try:
        mem_total = parse_meminfo((root / "proc/meminfo").read_text()).get("MemTotal")
    except OSError:
        mem_total = None

    candidates = [get_profile(n) for n in list_profiles()]
    by_model = [p for p in candidates if p.model_match and board and p.model_match.lower() in board.lower()]
    if not by_model and jetson:  # an L4T release file but no (or an unfamiliar) model string
        by_model = [p for p in candidates if p.family == "jetson"]
    if by_model:
        chosen = _by_memory(by_model, mem_total)
        if chosen is not None:
            return Detection(chosen, board, jetson, mem_total,
                             f"{board or 'Jetson (nv_tegra_release)'} with {_gib(mem_total)} MemTotal")
        known = ", ".join(p.name for p in by_model)
        note = f"{board or 'this Jetson'} with {_gib(mem_total)} MemTotal matches no profile's memory ({known})"
    else:
        note = f"no board profile for {board!r}" if board else "no device-tree model"

    if jetson:  # shared DRAM: the process-wide budget of the cpu profile is the safe meaning
        return Detection(get_profile("cpu"), board, jetson, mem_total,
                         f"{note}; using the generic cpu profile (whole-process budget): pass --device-profile NAME")
    if cuda_available is None:
        cuda_available = _torch_cuda_available
    generic = "cuda" if cuda_available() else "cpu"
    return Detection(get_profile(generic), board, jetson, mem_total, f"{note}; generic {generic}")


def live_memory(root: str | Path = "/", *, tegrastats_timeout_s: float = 3.0,
                nvml: Callable[[], list[dict[str, Any]] | None] = nvml_devices,
                tegrastats: Callable[[float], dict[str, Any] | None] = tegrastats_sample) -> dict[str, Any]:
    """Memory figures this machine offers right now, in bytes.

    Returns:
        ``host``: ``total_bytes`` / ``available_bytes`` (MemAvailable) and their source;
        ``nvml``: one entry per GPU (``used_bytes`` / ``total_bytes`` are ``None`` where NVML gives
        no memory, as on a Jetson), or ``None`` without NVML;
        ``tegrastats``: one reading on a Jetson where the binary exists (``None`` otherwise).
    """
    root = Path(root)
    jetson = is_jetson(str(root / "etc/nv_tegra_release"), str(root / "proc/device-tree/model"))
    return {"host": host_memory(str(root / "proc/meminfo")), "nvml": nvml(),
            "tegrastats": tegrastats(tegrastats_timeout_s) if jetson else None}


def _by_memory(profiles: list[DeviceProfile], mem_total: int | None) -> DeviceProfile | None:
    """The profile whose DRAM explains ``mem_total`` (the smallest that does), or ``None``."""
    if mem_total is None:
        return None
    fitting = [p for p in profiles if p.total_bytes and _MIN_SEEN <= mem_total / p.total_bytes <= _MAX_SEEN]
    return min(fitting, key=lambda p: p.total_bytes) if fitting else None


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**30:.2f} GiB"


def _torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
