"""``DeviceProfile``: what one target board (or a generic machine) offers, read from a TOML file.

Every figure in a profile file carries its source beside it (``source = "..."`` in each table); the
dataclass keeps them in ``sources`` so that `edgetrgl devices` and the docs can show where a
number came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from edgetrgl.errors import UserError

DTYPES = ("fp32", "fp16", "bf16")
ACCELERATORS = ("cuda", "none")
STORAGE_KINDS = ("sd", "emmc", "nvme", "ssd")


@dataclass(frozen=True)
class DeviceProfile:
    """One target's memory, storage, CPU and dtypes. Sizes in bytes, speeds in MB/s (10^6 B/s).

    Attributes:
        name: registry name, e.g. ``"rpi4-2gb"``.
        description: one line for humans.
        total_bytes: the board's DRAM; ``None`` on the generic profiles (read from the machine).
        shared_memory: CPU and accelerator share one DRAM (Jetson, Raspberry Pi).
        os_reserve_bytes: memory left to the OS and its services; not for the training process.
        accelerator: ``"cuda"`` or ``"none"``.
        storage_kind: ``"sd"``, ``"emmc"``, ``"nvme"`` or ``"ssd"``.
        storage_read_mb_s, storage_write_mb_s: typical sequential speeds of that storage.
        cpu_model: e.g. ``"Cortex-A72"``; ``"generic"`` on the generic profiles.
        cpu_cores, default_threads: ``None`` on the generic profiles (read from the machine).
        preferred_dtypes: compute dtypes, best first.
        model_match: substring of the device-tree model that identifies the board (``None``: generic).
        family: ``"jetson"``, ``"rpi4"``, ``"rpi5"`` or ``"generic"``.
        sources: where each group of figures comes from, keyed ``memory``, ``os_reserve``,
            ``accelerator``, ``storage``, ``cpu``, ``dtypes``.
    """

    name: str
    description: str
    total_bytes: int | None
    shared_memory: bool
    os_reserve_bytes: int
    accelerator: Literal["cuda", "none"]
    storage_kind: str
    storage_read_mb_s: float
    storage_write_mb_s: float
    cpu_model: str
    cpu_cores: int | None
    default_threads: int | None
    preferred_dtypes: tuple[str, ...]
    model_match: str | None = None
    family: str = "generic"
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def budget_scope(self) -> Literal["process", "device"]:
        """What a budget on this target covers: the GPU's own memory, or the whole process.

        Only a CUDA GPU with memory of its own has a budget separate from host RAM; on a Jetson
        (shared DRAM) and without an accelerator, what ends a run is the OOM killer on the process.
        """
        return "device" if self.accelerator == "cuda" and not self.shared_memory else "process"

    @property
    def generic(self) -> bool:
        """True for ``cpu`` and ``cuda``: their sizes come from the machine at run time."""
        return self.total_bytes is None


def profile_from_toml(data: dict[str, Any], origin: str) -> DeviceProfile:
    """Build a profile from parsed TOML; raise ``ValueError`` naming the file and field on a bad one.

    A broken profile file shipped with the package is a programming error (ValueError, traceback);
    a user's own file is wrapped into a UserError by the caller.
    """
    def need(table: dict, key: str, kind: type | tuple, where: str) -> Any:
        if key not in table:
            raise ValueError(f"{origin}: missing {where}{key}")
        value = table[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise ValueError(f"{origin}: {where}{key} has the wrong type ({value!r})")
        return value

    memory, acc, storage = data.get("memory", {}), data.get("accelerator", {}), data.get("storage", {})
    cpu, dtypes = data.get("cpu", {}), data.get("dtypes", {})
    total = memory.get("total_bytes")
    if total is not None:
        _check_size(origin, "memory.total", memory.get("total"), total)
    reserve = need(memory, "os_reserve_bytes", int, "memory.")
    _check_size(origin, "memory.os_reserve", memory.get("os_reserve"), reserve)
    accelerator = need(acc, "kind", str, "accelerator.")
    kind = need(storage, "kind", str, "storage.")
    preferred = tuple(need(dtypes, "preferred", list, "dtypes."))
    for label, value, allowed in (("accelerator.kind", accelerator, ACCELERATORS), ("storage.kind", kind, STORAGE_KINDS)):
        if value not in allowed:
            raise ValueError(f"{origin}: {label} must be one of {', '.join(allowed)}; got {value!r}")
    if not preferred or any(d not in DTYPES for d in preferred):
        raise ValueError(f"{origin}: dtypes.preferred must list some of {', '.join(DTYPES)}; got {list(preferred)}")
    sources = {"memory": memory.get("source"), "os_reserve": memory.get("os_reserve_source"),
               "accelerator": acc.get("source"), "storage": storage.get("source"), "cpu": cpu.get("source"),
               "dtypes": dtypes.get("source")}
    missing = [key for key, text in sources.items() if not text]
    if missing:
        raise ValueError(f"{origin}: every figure needs its source; none for {', '.join(missing)}")
    return DeviceProfile(
        name=need(data, "name", str, ""), description=need(data, "description", str, ""),
        total_bytes=total, shared_memory=need(memory, "shared", bool, "memory."), os_reserve_bytes=reserve,
        accelerator=accelerator, storage_kind=kind,
        storage_read_mb_s=float(need(storage, "read_mb_s", (int, float), "storage.")),
        storage_write_mb_s=float(need(storage, "write_mb_s", (int, float), "storage.")),
        cpu_model=need(cpu, "model", str, "cpu."), cpu_cores=cpu.get("cores"), default_threads=cpu.get("default_threads"),
        preferred_dtypes=preferred, model_match=data.get("model_match"), family=data.get("family", "generic"),
        sources=sources,
    )


def _check_size(origin: str, key: str, text: Any, value: Any) -> None:
    """The human size string and the byte count must say the same thing (they are written side by side)."""
    from edgetrgl.config import parse_size

    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{origin}: {key}_bytes must be a non-negative integer; got {value!r}")
    try:
        parsed = parse_size(text) if text is not None else None
    except UserError as err:
        raise ValueError(f"{origin}: {key}: {err}") from None
    if parsed != value:
        raise ValueError(f"{origin}: {key} = {text!r} is {parsed} bytes, but {key}_bytes = {value}")
