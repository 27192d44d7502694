"""Judge the three boots of run.sh: the resumed run's weights against the uninterrupted run's, bitwise.

    python compare.py BOOTS_DIR --results DIR [--cut-delays D ...] [--qemu VERSION]

Reads BOOTS_DIR/full and each BOOTS_DIR/{cut,resume}-Ds (each boot's record and the files its guest
wrote on the share),
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


def cut_case(boots: Path, delay: str, model_full: Path) -> dict:
    """One cut (``cut-Ds``) and its resume (``resume-Ds``): what the cut left and the resumed weights."""
    cut, resume = boots / f"cut-{delay}s", boots / f"resume-{delay}s"
    out = resume / "share" / "out"
    found = re.search(r"resuming .*?from\s+(.*?)$", read(out / "train.log"), re.S | re.M)
    model = out / "model.pt"
    return {
        "cut_delay_s": float(delay), "cut_at": read(cut / "share" / "job.sh").partition("STALL_AT=")[2].split("\n")[0],
        "boots": {"cut": boot_summary(cut), "resume": boot_summary(resume)},
        "run_folder_at_resume": read(out / "run-at-boot.txt").splitlines(),
        "checkpoints_at_resume": [checkpoint_verdict(f) for f in sorted((out / "at-boot").glob("checkpoint.pt*"))],
        "resumed_from": " ".join(found.group(1).split()) if found else None,
        "weights": compare_weights(model_full, model) if model_full.exists() and model.exists()
        else {"bitwise_equal": None, "missing": [str(x) for x in (model_full, model) if not x.exists()]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("boots", type=Path)
    p.add_argument("--cut-delays", nargs="+", default=["0"], help="the D of each cut-Ds/resume-Ds pair")
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--qemu", default="")
    args = p.parse_args(argv)
    out_full = args.boots / "full" / "share" / "out"
    guest = read(out_full / "guest.txt").splitlines()
    result = {
        "qemu": args.qemu, "machine": "qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 4 -m 2048 (TCG)",
        "data_disk": "raw, cache=none,aio=native (O_DIRECT), ext4 in the guest",
        "guest_kernel": guest[0] if guest else None, "guest_python": guest[1] if len(guest) > 1 else None,
        "guest_torch": guest[2] if len(guest) > 2 else None,
        "fault_counts_full_run": json.loads(read(out_full / "faults.json") or "{}"),
        "full": boot_summary(args.boots / "full"),
        "cuts": [cut_case(args.boots, d, out_full / "model.pt") for d in args.cut_delays],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.results / "RESULTS.md").write_text(markdown(result))
    for c in result["cuts"]:
        w = c["weights"]
        print(f"compare.py: cut {c['cut_delay_s']:g} s after {c['cut_at']}: resumed from {c['resumed_from']}; "
              f"weights bitwise equal: {w['bitwise_equal']} ({w.get('tensors')} tensors)")
    print(f"compare.py: results in {args.results}")
    return 0 if all(c["weights"]["bitwise_equal"] for c in result["cuts"]) else 1


def markdown(r: dict) -> str:
    lines = ["# Power cut in the middle of a checkpoint write, on the emulated Pi 4", "",
             "Written by `benchmarks/aarch64/powercut/run.sh --record` (`compare.py`). "
             f"{r['machine']}; {r['qemu']}; data disk {r['data_disk']}.",
             f"Guest: `{r['guest_kernel']}`; {r['guest_python']}; {r['guest_torch']}; one torch thread.", "",
             "| boot | ended | host s | guest s at job start | guest s at `train` start | guest s in `train` | train exit |",
             "|---|---|---|---|---|---|---|"]
    boots = {"full": r["full"]}
    for c in r["cuts"]:
        boots.update({f"{k}-{c['cut_delay_s']:g}s": v for k, v in c["boots"].items()})
    for name, b in boots.items():
        u = b["guest_uptime_s"]
        training = round(u["trained"] - u["train"], 1) if "trained" in u and "train" in u else "-"
        lines.append(f"| {name} | {b['outcome']} | {b['host_wall_s']} | {u.get('boot', '-')} | {u.get('train', '-')} | {training} | {b['train_rc'] or '-'} |")
    lines += ["", f"Fault points counted by the uninterrupted run: `{json.dumps(r['fault_counts_full_run'])}`."]
    for c in r["cuts"]:
        cut, w = c["boots"]["cut"], c["weights"]
        lines += ["", f"## Cut {c['cut_delay_s']:g} s after the guest reported `{c['cut_at']}`", "",
                  f"- `EDGETRGL_STALL_AT={c['cut_at']}` (the middle checkpoint write: half the file written, nothing "
                  f"fsync'd); the guest printed `{cut['cut_line']}`, QEMU was dead {cut['cut_seen_to_qemu_dead_s']} s "
                  f"(host) after the host saw it",
                  "- the run folder the resumed boot found (after ext4's journal replay):", "", "```",
                  *c["run_folder_at_resume"], "```", ""]
        for f in c["checkpoints_at_resume"]:
            lines.append(f"- `{f['file']}` ({f['bytes']} bytes), through edgetrgl's loader: " +
                         (f"loads, position {f['position']}" if f["loads"] else f"refused: {f['refused']}"))
        if not any(f["file"].endswith(".tmp") for f in c["checkpoints_at_resume"]):
            lines.append("- no `checkpoint.pt.tmp`: the torn write was lost with the guest's page cache")
        lines += [f"- resumed from: {c['resumed_from']}",
                  f"- **weights bitwise equal to the uninterrupted run: {w['bitwise_equal']}** "
                  f"({w.get('tensors')} tensors, {w.get('elements')} values; differing: {w.get('differ', w.get('missing'))})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
