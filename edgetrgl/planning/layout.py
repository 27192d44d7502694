"""Which modules each pipeline rank owns: contiguous groups, equal or balanced by estimated memory.

Part of the plan (``RunPlan.layout``), decided once with the modules' estimates it already has.
"""

from __future__ import annotations

from edgetrgl.errors import UserError
from edgetrgl.memory.planner import linear_partition


def rank_layout(num_modules: int, world_size: int, weights: list[int] | None = None) -> list[range]:
    """Split modules ``0..K-1`` into ``world_size`` contiguous groups, one per rank.

    Args:
        num_modules: K.
        world_size: P, the number of pipeline ranks.
        weights: per-module cost (estimated peak bytes); the groups then minimise the heaviest
            rank's sum. None: equal counts (the first ranks take the remainder).

    Returns:
        P non-empty ranges covering every module once, in order.

    Raises:
        UserError: more ranks than modules (a rank would have nothing to train).
    """
    if world_size > num_modules:
        raise UserError(f"the pipeline has {world_size} ranks but only {num_modules} module(s): "
                        f"use --modules {world_size} or more, or fewer processes (--nproc-per-node)")
    if weights is None:
        base, extra = divmod(num_modules, world_size)
        sizes = [base + (1 if r < extra else 0) for r in range(world_size)]
        starts = [sum(sizes[:r]) for r in range(world_size)]
    else:
        starts = [0] + linear_partition(list(weights), [0] * num_modules, world_size)
    stops = starts[1:] + [num_modules]
    return [range(a, b) for a, b in zip(starts, stops)]
