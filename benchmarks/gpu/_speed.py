"""The speed step: sequential TRGL's time per sample against e2e's, as the trainer feeds them, and the profile.

One fresh process (``feed_worker.py``) measures e2e, then sequential and parallel TRGL at each (K, split)
of the profile, every way of serving the batches (see that file), and profiles one module's epoch with
the plain feed and with the CUDA feed. The memory-balanced boundaries come from the estimates that
run in the background from the start (the same ones the memory step measures with).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from _runs import child_json

from edgetrgl.bench.setting import BenchSetting

WORKER = Path(__file__).resolve().parent / "feed_worker.py"
TARGET = 1.10  # issue 21: sequential TRGL per sample <= 1.10x e2e's at K = 8 balanced (ResNet-110 96x96, batch 64)


def run_speed(run) -> None:
    p = run.profile
    section: dict[str, Any] = {"setting": p.setting_dict(run.device), "pairs": [list(x) for x in p.speed_pairs],
                               "batches": p.speed_batches, "warmup": p.speed_warmup, "target": TARGET}
    run.results["speed"] = section
    settings = []
    for k, split in p.speed_pairs:
        setting = BenchSetting(model=p.model, image_size=p.image_size, batch_size=p.batch_size, modules=k, split=split,
                               device=run.device, model_options=dict(p.model_options))
        setting.boundaries = run.estimates.boundaries(k, split, wait_until=run.part_deadline)
        settings.append(setting.to_dict())
    profile_at = next((i for i, pair in enumerate(p.speed_pairs) if pair == p.profile_pair), None)
    payload: dict[str, Any] = {"settings": settings, "batches": p.speed_batches, "warmup": p.speed_warmup,
                               "deadline_s": max(5.0, run.part_deadline - time.monotonic() - 10.0), "profile": profile_at}
    if run.device == "cpu":
        payload["threads"] = 1
    folder = run.workdir / "speed"
    folder.mkdir(exist_ok=True)
    (folder / "payload.json").write_text(json.dumps(payload))
    cmd = [run.python, str(WORKER), "--payload", str(folder / "payload.json"), "--out", str(folder / "result.json")]
    result = child_json(run, cmd, section, "speed: feed_worker.py", folder / "result.json")
    if result is None:
        return
    section.update(result)
    section["ratios"] = ratios(result)
    section["status"] = "stopped at its time share" if result.get("stopped") else "done"
    for row in section["ratios"]:
        run.log(f"speed: K={row['modules']} {row['split']}: sequential / e2e {_x(row.get('sequential_stream'))} "
                f"(stream), {_x(row.get('sequential_plain'))} (plain), {_x(row.get('sequential_device'))} (on device); "
                f"parallel / e2e {_x(row.get('parallel_stream'))}")
    verdict = target_verdict(section)
    section["target_verdict"] = verdict
    run.log(f"speed: {verdict} [{section['wall_s']:.0f} s]")


def ratios(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (K, split): sequential's and parallel's time per sample over e2e's, each feed against the same feed."""
    e2e = result.get("e2e", {})
    rows = []
    for row in result.get("rows", []):
        out: dict[str, Any] = {"modules": row["modules"], "split": row["split"]}
        for feed, seconds in (row.get("sequential") or {}).items():
            out[f"sequential_{feed.replace('-', '_')}"] = seconds / e2e[feed] if e2e.get(feed) else None
        for feed, seconds in (row.get("parallel") or {}).items():
            out[f"parallel_{feed}"] = seconds / e2e[feed] if e2e.get(feed) else None
        rows.append(out)
    return rows


def target_verdict(section: dict[str, Any]) -> str:
    """The issue's target, in one line (only the paper's setting at K = 8 balanced can meet it)."""
    row = next((r for r in section.get("ratios", []) if r["modules"] == 8 and r["split"] == "balanced"), None)
    s = section["setting"]
    paper = (s["model"], s["input"], s["batch_size"]) == ("resnet110", [3, 96, 96], 64)
    if row is None or row.get("sequential_stream") is None:
        return "target (sequential <= 1.10x e2e at K=8 balanced): not measured in this profile"
    met = row["sequential_stream"] <= TARGET
    where = "" if paper else " (not the paper's setting: indicative only)"
    return (f"target sequential <= {TARGET:.2f}x e2e at K=8 balanced: {'met' if met else 'NOT met'}, "
            f"{row['sequential_stream']:.2f}x with the CUDA feed{where}")


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
