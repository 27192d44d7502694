"""This process on a board: its profile's budget, the allocator bound, the footprint measured.

Every rank of a run calls :func:`prepare_process` before anything is planned (the allocator bound
is process-wide: each rank is its own process and needs its own); the rank that plans then calls
:func:`measure_footprint` and hands the result to ``make_plan``, which measures nothing itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from edgetrgl.devices.allocator import bound_allocator_slack
from edgetrgl.devices.budget import DeviceBudget, resolve_budget
from edgetrgl.devices.footprint import current_footprint


@dataclass(frozen=True)
class ProcessFacts:
    """What ``--device-profile`` resolved to in this process, and what was measured or set here.

    Attributes:
        budget: the profile's budget and what it covers (``scope``: the whole process, or the GPU).
        allocator: what :func:`bound_allocator_slack` set (None: not a whole-process budget, or not glibc).
        footprint_bytes: the runtime's anonymous memory after imports, data and the planner's first
            estimate (None until :func:`measure_footprint`).
    """

    budget: DeviceBudget
    allocator: str | None = None
    footprint_bytes: int | None = None

    @property
    def whole_process(self) -> bool:
        return self.budget.scope == "process"


def prepare_process(device_profile: str, budget_bytes: int | None) -> ProcessFacts:
    """Resolve ``--device-profile`` (``auto``: detect the board) and, where the budget is the whole
    process, bound the allocator's slack in this process (freed heap would count against it).

    Raises:
        UserError: an unknown profile.
    """
    from edgetrgl.devices.detect import detect
    from edgetrgl.devices.registry import get_profile

    profile = detect().profile if device_profile == "auto" else get_profile(device_profile)
    resolved = resolve_budget(profile, budget_bytes)
    return ProcessFacts(resolved, bound_allocator_slack() if resolved.scope == "process" else None)


def measure_footprint(facts: ProcessFacts, warm: Callable[[], None] = lambda: None) -> ProcessFacts:
    """``facts`` with this process's footprint, measured after ``warm()`` (whatever will stay in the
    process for the whole run, such as the planner's runtime, must be in it); unchanged where the
    budget is not the whole process."""
    if not facts.whole_process:
        return facts
    warm()
    return dataclasses.replace(facts, footprint_bytes=current_footprint().anon_bytes)
