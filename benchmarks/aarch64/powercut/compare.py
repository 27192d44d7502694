"""Judge the three boots of run.sh: the resumed run's weights against the uninterrupted run's, bitwise.

    python compare.py BOOTS_DIR --results DIR [--qemu VERSION]

Reads BOOTS_DIR/{full,cut,resume} (each boot's record and the files its guest wrote on the share),
loads both ``model.pt`` files on the host (torch's files are portable) and compares every tensor
with ``torch.equal``; checks each checkpoint file the cut left (``checkpoint.pt`` and the torn
``checkpoint.pt.tmp``) with edgetrgl's own loader. Writes DIR/results.json and DIR/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

from edgetrgl.errors import UserError
from edgetrgl.training.checkpoint import load_checkpoint


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def guest_seconds(out: Path) -> dict[str, float]:
    """The guest's uptime at each mark of job.sh (emulated seconds since its kernel started)."""
    marks = {"boot": float(read(out / "boot.uptime").split()[0])} if read(out / "boot.uptime") else {}
    for line in read(out / "uptimes.txt").splitlines():
        name, value = line.split()
        marks[name] = float(value)
    return marks


def boot_summary(boot: Path) -> dict:
    record = json.loads(read(boot / "boot.json") or "{}")
    out = boot / "share" / "out"
    return {"outcome": record.get("outcome"), "host_wall_s": record.get("wall_s"), "cut_line": record.get("cut_line"),
            "cut_seen_to_qemu_dead_s": record.get("seen_to_dead_s"), "guest_uptime_s": guest_seconds(out),
            "train_rc": read(out / "train.rc").strip() or None, "train_log_tail": read(out / "train.log").splitlines()[-4:]}


def checkpoint_verdict(path: Path) -> dict:
    """What edgetrgl's loader makes of a checkpoint file the cut left: its position, or its refusal."""
    try:
        state = load_checkpoint(path.parent, path.name)
    except UserError as exc:
        return {"file": path.name, "bytes": path.stat().st_size, "loads": False, "refused": str(exc).split(";")[0]}
    return {"file": path.name, "bytes": path.stat().st_size, "loads": True, "position": dict(state["position"])}


def compare_weights(a: Path, b: Path) -> dict:
    """Every tensor of the two model files, compared bitwise."""
    sa = torch.load(a, map_location="cpu", weights_only=True)["state_dict"]
    sb = torch.load(b, map_location="cpu", weights_only=True)["state_dict"]
    differ = [k for k in sa if k not in sb or not torch.equal(sa[k], sb[k])] + [k for k in sb if k not in sa]
    return {"tensors": len(sa), "elements": sum(t.numel() for t in sa.values()), "differ": differ,
            "bitwise_equal": not differ}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("boots", type=Path)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--qemu", default="")
    args = p.parse_args(argv)
    full, cut, resume = (args.boots / n for n in ("full", "cut", "resume"))
    out_full, out_resume = full / "share" / "out", resume / "share" / "out"
    guest = read(out_full / "guest.txt").splitlines()
    at_boot = sorted((out_resume / "at-boot").glob("checkpoint.pt*"))
    resumed_from = re.search(r"resuming .*?from\s+(.*?)$", read(out_resume / "train.log"), re.S | re.M)
    result = {
        "qemu": args.qemu, "machine": "qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 4 -m 2048 (TCG)",
        "data_disk": "raw, cache=none,aio=native (O_DIRECT), ext4 in the guest",
        "guest_kernel": guest[0] if guest else None, "guest_python": guest[1] if len(guest) > 1 else None,
        "guest_torch": guest[2] if len(guest) > 2 else None,
        "fault_counts_full_run": json.loads(read(out_full / "faults.json") or "{}"),
        "cut_at": read(cut / "share" / "job.sh").partition("STALL_AT=")[2].split("\n")[0],
        "boots": {b.name: boot_summary(b) for b in (full, cut, resume)},
        "run_folder_at_resume": read(out_resume / "run-at-boot.txt").splitlines(),
        "checkpoints_at_resume": [checkpoint_verdict(f) for f in at_boot],
        "resumed_from": " ".join(resumed_from.group(1).split()) if resumed_from else None,
    }
    a, b = out_full / "model.pt", out_resume / "model.pt"
    result["weights"] = compare_weights(a, b) if a.exists() and b.exists() else {"bitwise_equal": None, "missing": [str(x) for x in (a, b) if not x.exists()]}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "RESULTS.md").write_text(markdown(result))
    w = result["weights"]
    print(f"compare.py: resumed from {result['resumed_from']}; weights bitwise equal: {w['bitwise_equal']}"
          f" ({w.get('tensors')} tensors); results in {args.results}")
    return 0 if w["bitwise_equal"] else 1


def markdown(r: dict) -> str:
    boots = r["boots"]
    lines = ["# Power cut in the middle of a checkpoint write, on the emulated Pi 4", "",
             "Written by `benchmarks/aarch64/powercut/run.sh --record` (`compare.py`). "
             f"{r['machine']}; {r['qemu']}; data disk {r['data_disk']}.",
             f"Guest: `{r['guest_kernel']}`; {r['guest_python']}; {r['guest_torch']}.", "",
             "| boot | ended | host s | guest s at job start | guest s at `train` start | guest s in `train` | train exit |",
             "|---|---|---|---|---|---|---|"]
    for name, b in boots.items():
        u = b["guest_uptime_s"]
        training = round(u["trained"] - u["train"], 1) if "trained" in u and "train" in u else "-"
        lines.append(f"| {name} | {b['outcome']} | {b['host_wall_s']} | {u.get('boot', '-')} | {u.get('train', '-')} | {training} | {b['train_rc'] or '-'} |")
    cut = boots["cut"]
    lines += ["", f"- fault points counted by the uninterrupted run: `{json.dumps(r['fault_counts_full_run'])}`",
              f"- the cut: `EDGETRGL_STALL_AT={r['cut_at']}` (the middle checkpoint write: half the file written, "
              f"nothing fsync'd); the guest printed `{cut['cut_line']}` and QEMU was dead "
              f"{cut['cut_seen_to_qemu_dead_s']} s (host) after the host saw it",
              "- what the resumed boot found in the run folder (after ext4's journal replay):", "", "```",
              *r["run_folder_at_resume"], "```", ""]
    for c in r["checkpoints_at_resume"]:
        lines.append(f"- `{c['file']}` ({c['bytes']} bytes): " + (f"loads, position {c['position']}" if c["loads"]
                     else f"refused: {c['refused']}"))
    w = r["weights"]
    lines += [f"- resumed from: {r['resumed_from']}",
              f"- **weights bitwise equal to the uninterrupted run: {w['bitwise_equal']}** "
              f"({w.get('tensors')} tensors, {w.get('elements')} values; differing: {w.get('differ', w.get('missing'))})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
