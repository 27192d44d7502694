"""What a regime needs from the rest of the package, as plain data: the planner reads it without
importing the training loops (``edgetrgl/training/regimes/`` declares one per regime)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegimeTraits:
    """What a regime needs from the rest of the package.

    Attributes:
        modular: split into K modules with a head each (False: one module and one head, as e2e).
        needs_cache: trains one module at a time and reads the finished modules' outputs from the
            activation cache (so it has a cache plan, offloading, and a per-module position).
        plans_budget: the planner may choose K, boundaries and micro-batch to fit a budget
            (otherwise a budget is only checked against one step of the whole network).
        multi_process: runs as several processes under torchrun (the modules spread over the ranks).
        transport: has a transport term when the method is TRGL (e2e: never).
    """

    modular: bool
    needs_cache: bool
    plans_budget: bool
    multi_process: bool = False
    transport: bool = True
