"""The Pareto front of a comparison: the methods no other method beats on both memory and time.

    pareto_front([(100, 2.0), (50, 3.0), (80, 3.5)])  # -> [0, 1]: (80, 3.5) is beaten by (50, 3.0)
"""

from __future__ import annotations

from typing import Any, Sequence

# which figure is the y axis: measured time when there is one, else the estimated work (FLOPs)
Y_KEYS = ("time_per_sample_s", "flops_per_sample")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points on the front, lower being better on both axes, in input order.

    A point is off the front when another point is at most as large on both axes and strictly
    smaller on one. Equal points do not beat each other: both stay on the front.
    """
    return [i for i, (x, y) in enumerate(points)
            if not any(ox <= x and oy <= y and (ox < x or oy < y) for ox, oy in points)]


def mark_front(report: dict[str, Any]) -> dict[str, Any]:
    """Add ``on_pareto_front`` to every result and ``pareto`` (axes and front, by method name) to ``report``.

    x is ``peak_bytes``; y the first of :data:`Y_KEYS` that every result with a peak has
    (measured time per sample, else estimated FLOPs per sample). Results missing either figure
    are left off the front (``on_pareto_front`` False). Returns ``report``.
    """
    results = [r for r in report["results"] if r.get("peak_bytes") is not None]
    y_key = next((k for k in Y_KEYS if results and all(r.get(k) is not None for r in results)), None)
    if y_key is None:  # some method has no time (an error): the front of those that have one
        y_key = next((k for k in Y_KEYS if any(r.get(k) is not None for r in results)), Y_KEYS[0])
    placed = [r for r in results if r.get(y_key) is not None]
    front = {placed[i]["method"] for i in pareto_front([(r["peak_bytes"], r[y_key]) for r in placed])}
    for r in report["results"]:
        r["on_pareto_front"] = r["method"] in front
    report["pareto"] = {"x": "peak_bytes", "y": y_key,
                        "front": [r["method"] for r in sorted(placed, key=lambda r: r["peak_bytes"]) if r["method"] in front]}
    return report
