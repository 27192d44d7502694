"""What a memory budget means on a device profile, and how big it is when the user gives none.

On a shared-memory board (Jetson, Raspberry Pi) and on a CPU-only machine, the budget covers the
**whole process**: torch's own footprint, allocator slack, data, the host cache, frozen modules
and the tensors of the module being trained. What ends a run there is the kernel's OOM killer on
the process. On a GPU with memory of its own, the budget is the **GPU's memory**; host RAM is
separate.

A budget above the board's memory is an **error**: the board physically cannot give it, so the
user either picked the wrong profile or mistyped the size, and a plan made for memory that is not
there would end in the OOM killer, after minutes of work, instead of a line now. A budget between
the memory less the OS reserve and the memory itself is only a **warning**: the reserve is our
estimate of what the OS needs, and a trimmed headless system may need less. Generic profiles
(``cpu``, ``cuda``) describe "this machine", measured at run time: there a budget above the
measured memory is a warning (a plan made here for a larger machine is legitimate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetrgl.config import format_bytes
from edgetrgl.devices.profile import DeviceProfile
from edgetrgl.errors import UserError


@dataclass(frozen=True)
class DeviceBudget:
    """A budget in bytes and what it covers.

    Attributes:
        budget_bytes: the budget.
        scope: ``"process"`` (whole-process memory, as the kernel counts it) or ``"device"`` (the
            GPU's own memory).
        source: ``"user"`` (``--budget``) or ``"profile"`` (memory less the OS reserve).
        profile: the profile's name.
        memory_bytes: the memory the budget was checked against (the profile's, or this machine's
            for a generic profile).
        meaning: one line for humans, e.g. "whole process on rpi4-2gb: 1.8 GiB (2.0 GiB less 256 MiB OS reserve)".
        warnings: lines to show the user (the budget is still used).
    """

    budget_bytes: int
    scope: Literal["process", "device"]
    source: Literal["user", "profile"]
    profile: str
    memory_bytes: int
    meaning: str
    warnings: tuple[str, ...] = ()


def resolve_budget(profile: DeviceProfile, budget_bytes: int | None = None, *,
                   machine_memory_bytes: int | None = None) -> DeviceBudget:
    """The budget to plan with on ``profile``, given the user's ``--budget`` (or none).

    Args:
        profile: the device profile (``get_profile(name)`` or ``detect().profile``).
        budget_bytes: the user's budget in bytes, or ``None`` for the profile's memory less its
            OS reserve.
        machine_memory_bytes: for the generic profiles only, this machine's memory in the
            budget's scope (host RAM for ``cpu``, GPU memory for ``cuda``); measured when ``None``.

    Returns:
        A :class:`DeviceBudget`.

    Raises:
        UserError: a budget above a board profile's memory; a profile whose memory less its
            reserve leaves nothing; a generic ``cuda`` profile on a machine without a GPU.
    """
    scope = profile.budget_scope
    memory = profile.total_bytes if profile.total_bytes is not None else (
        machine_memory_bytes if machine_memory_bytes is not None else machine_memory(scope))
    where = "whole process" if scope == "process" else "GPU memory"
    available = memory - profile.os_reserve_bytes
    warnings: list[str] = []
    if budget_bytes is None:
        if available <= 0:
            raise UserError(f"device profile {profile.name}: {format_bytes(memory)} less the "
                            f"{format_bytes(profile.os_reserve_bytes)} OS reserve leaves nothing; pass --budget")
        meaning = (f"{where} on {profile.name}: {format_bytes(available)} "
                   f"({format_bytes(memory)} less {format_bytes(profile.os_reserve_bytes)} OS reserve)")
        return DeviceBudget(available, scope, "profile", profile.name, memory, meaning)

    if budget_bytes > memory:
        text = (f"--budget {format_bytes(budget_bytes)} is more than the {format_bytes(memory)} "
                f"of {'this machine' if profile.generic else profile.name}")
        if not profile.generic:
            raise UserError(f"{text}; pick the profile of your board (see `edgetrgl devices`) or a smaller budget")
        warnings.append(f"{text}: the run may be killed here")
    elif budget_bytes > available:
        warnings.append(f"--budget {format_bytes(budget_bytes)} leaves less than the "
                        f"{format_bytes(profile.os_reserve_bytes)} that {profile.name} keeps for the OS; "
                        "fine on a trimmed system, an OOM kill otherwise")
    meaning = f"{where} on {profile.name}: {format_bytes(budget_bytes)} (--budget; {format_bytes(memory)} in all)"
    return DeviceBudget(budget_bytes, scope, "user", profile.name, memory, meaning, tuple(warnings))


def machine_memory(scope: Literal["process", "device"]) -> int:
    """This machine's memory in a budget's scope: host RAM (``process``) or GPU 0's memory (``device``).

    Raises:
        UserError: ``device`` scope without a CUDA GPU.
    """
    if scope == "process":
        import psutil

        return int(psutil.virtual_memory().total)
    import torch

    if not torch.cuda.is_available():
        raise UserError("device profile cuda needs a CUDA GPU, and torch sees none here; use --device-profile cpu")
    return int(torch.cuda.get_device_properties(0).total_memory)
