"""The run plan: every decision a run needs, made once, before training, and handed down as data."""

from edgetrgl.planning.budget import Budget
from edgetrgl.cache.placement import CachePlan, plan_cache
from edgetrgl.planning.device import memory_kind, resolve_device
from edgetrgl.planning.run_plan import RunPlan, make_plan

__all__ = ["Budget", "CachePlan", "RunPlan", "make_plan", "memory_kind", "plan_cache", "resolve_device"]
