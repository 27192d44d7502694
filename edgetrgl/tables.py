"""Console tables of a run: the plan before training, the modules after it."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from edgetrgl.config import format_bytes


def module_table(modules: list[dict[str, Any]], title: str, budget: int | None = None) -> Table:
    """The final table: per-module test (and validation) accuracy, time, estimated and measured peak memory."""
    table = Table(title=title)
    planned = any(m.get("estimated_peak_bytes") is not None for m in modules)
    validated = any(m.get("val_accuracy") is not None for m in modules)
    columns = ["module", "blocks"] + (["val acc %"] if validated else []) + ["test acc %", "time s"] + (["est. peak"] if planned else []) + ["tensor peak", "peak RSS"]
    if budget:
        columns.append("% of budget")
    for column in columns:
        table.add_column(column, justify="right")
    for m in modules:
        acc = m.get("test_accuracy")
        val = m.get("val_accuracy")
        row = [str(m["module"]), f"{m['blocks'][0]}-{m['blocks'][1] - 1}"]
        row += (["-" if val is None else f"{100 * val:.2f}"] if validated else [])
        row += ["-" if acc is None else f"{100 * acc:.2f}", f"{m.get('time_s', 0):.1f}"]
        row += [format_bytes(m.get("estimated_peak_bytes"))] if planned else []
        row += [format_bytes(m.get("peak_bytes")), format_bytes(m.get("peak_rss_bytes"))]
        if budget:
            row.append("-" if m.get("peak_bytes") is None else f"{100 * m['peak_bytes'] / budget:.0f}%")
        table.add_row(*row)
    return table


def plan_table(estimates: dict[str, Any]) -> Table:
    """The planner's choice, before training: module, blocks, estimated peak, % of budget.

    Args:
        estimates: ``memory.planner.Plan.to_dict()`` (a run plan's ``estimates``).
    """
    budget = estimates["budget"]
    title = "plan" + (f" for a budget of {format_bytes(budget)} ({budget / 1e9:.3g} GB)" if budget else "")
    if estimates["micro_batch"] < estimates["batch_size"]:
        title += f", micro-batches of {estimates['micro_batch']}"
    table = Table(title=title)
    for column in ("module", "blocks", "est. peak", "% of budget"):
        table.add_column(column, justify="right")
    for m in estimates["modules"]:
        peak = m["estimated_peak_bytes"]
        share = f"{100 * peak / budget:.0f}%" if budget else "-"
        table.add_row(str(m["module"]), f"{m['blocks'][0]}-{m['blocks'][1] - 1}", format_bytes(peak), share)
    return table


def candidates_table(solver: dict[str, Any], budget: int | None) -> Table:
    """``--regime auto``: every way to train that was weighed, whether it fits, its estimated peak and
    modelled time per epoch, and the one chosen with why (``RunPlan.solver``)."""
    title = "ways to train" + (f" under a budget of {format_bytes(budget)} ({budget / 1e9:.3g} GB)" if budget else "")
    table = Table(title=title, caption=f"chosen: {solver['chosen']}: {solver['why']}")
    for column in ("candidate", "fits", "est. peak", "modelled time / epoch", ""):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for c in solver["candidates"]:
        epoch = c["modelled_epoch_s"]
        table.add_row(c["candidate"], "yes" if c["fits"] else "no", format_bytes(c["estimated_peak_bytes"]),
                      "-" if epoch is None else f"{epoch:.1f} s", "chosen" if c["candidate"] == solver["chosen"] else "")
    return table
