"""How the one call's time is shared between its steps."""

from __future__ import annotations


def step_deadlines(started: float, names: list[str], shares: dict[str, float], budget_s: float) -> dict[str, float]:
    """Each step's deadline (a ``time.monotonic`` value): the cumulative sum of the chosen steps' shares,
    scaled so the last one ends at ``started + budget_s``. A step that ends early leaves its time to the
    next ones; tests have no share of their own (they run beside accuracy, or alone with what is left)."""
    timed = [n for n in names if n in shares]
    total = sum(shares[n] for n in timed) or 1.0
    deadlines, elapsed = {}, 0.0
    for n in timed:
        elapsed += shares[n] * budget_s / total
        deadlines[n] = started + elapsed
    for n in names:
        deadlines.setdefault(n, started + budget_s)
    return deadlines
