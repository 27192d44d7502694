"""Records and report of the emulated Pi 4 (host side, standard library only).

    results.py collect BOOT_DIR --name N --job J --torch V --qemu "..." --records FILE
    results.py write --records FILE --out RESULTS.md

``collect`` reads what one boot left (boot.json from boot.py; on the share: steps.jsonl, each
step's log and memory summary, the run's summary.json, dmesg, board facts) and appends one record.
``write`` keeps the latest record per boot name and writes the report. run.sh calls both after
every boot, so a stopped study keeps every boot it finished.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 2 ** 20


def _load_sibling(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# smoke.py's step markers are parsed as in the qemu-user study
smoke_steps = _load_sibling("aarch64_results", HERE.parent / "results.py")._smoke_steps

OOM_RE = re.compile(r"Out of memory: Killed process (\d+) \(([^)]*)\).*?anon-rss:(\d+)kB")
SIGNAL_RE = re.compile(r"^\[[ \d.]+\] (\S+\[\d+\]: unhandled .*)$", re.M)


def read_text(path: Path) -> str:
    """A file's text, or "" when it is not there (a boot killed before writing it)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def read_json(path: Path):
    """A JSON file's value, or None when absent or cut short."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    """The complete JSON lines of a file (a last line cut by a power cut is skipped)."""
    rows = []
    for line in read_text(path).splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def tail(text: str, lines: int = 8) -> list[str]:
    """The last non-empty lines of a text."""
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def oom_kills(dmesg: str) -> list[dict]:
    """The OOM killer's victims in a kernel log: pid, name and anonymous RSS at the kill."""
    return [{"pid": int(pid), "name": name, "anon_rss_bytes": int(kib) * 1024}
            for pid, name, kib in OOM_RE.findall(dmesg)]


def unhandled_signals(dmesg: str) -> list[str]:
    """The kernel's lines about user processes killed by an unhandled signal (SIGILL, SIGSEGV)."""
    return SIGNAL_RE.findall(dmesg)


def board_facts(text: str) -> dict:
    """The sections of board.txt that say what the guest looks like."""
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    def first(key):
        lines = [l for l in sections.get(key, []) if l.strip()]
        return lines[0].strip() if lines else None
    cpuinfo = "\n".join(sections.get("/proc/cpuinfo (cpu0)", []))
    features = re.search(r"^Features\s*:\s*(.*)$", cpuinfo, re.M)
    part = re.search(r"^CPU part\s*:\s*(\S+)$", cpuinfo, re.M)
    mem = re.search(r"MemTotal:\s*(\d+) kB", "\n".join(sections.get("/proc/meminfo", [])))
    return {"kernel": first("uname"), "model": first("/proc/device-tree/model"),
            "compatible": first("/proc/device-tree/compatible"), "midr_el1": first("midr_el1 (cpu0)"),
            "nproc": first("nproc"), "cpu_part": part.group(1) if part else None,
            "features": features.group(1).strip() if features else None,
            "mem_total_bytes": int(mem.group(1)) * 1024 if mem else None, "python": first("python")}


def train_summary(summary: dict | None) -> dict | None:
    """What the report needs from a run's summary.json: accuracies, the plan, its estimate."""
    if not summary:
        return None
    plan = summary.get("plan") or {}
    process = plan.get("process") or {}
    cache = plan.get("cache") or {}
    return {"modules": [{"module": m.get("module"), "blocks": m.get("blocks"),
                         "test_accuracy": m.get("test_accuracy"), "time_s": m.get("time_s"),
                         "peak_rss_bytes": m.get("peak_rss_bytes"), "anon_bytes": m.get("anon_bytes")}
                        for m in summary.get("modules", [])],
            "best": summary.get("best_module"), "wall_time_s": summary.get("wall_time_s"),
            "cache": cache.get("mode"), "cache_reason": cache.get("reason"), "offload": plan.get("offload"),
            "process_budget_bytes": process.get("budget_bytes"), "process_meaning": process.get("meaning"),
            "footprint_bytes": process.get("footprint_bytes"),
            "estimated_peak_bytes": process.get("estimated_peak_bytes"),
            "checkpoint_blocks": plan.get("checkpoint_blocks"), "versions": summary.get("versions"),
            "config_epochs": (summary.get("config") or {}).get("epochs"),
            "num_train": (summary.get("dataset") or {}).get("num_train")}


def collect(boot_dir: Path, name: str, job: str, torch: str, qemu: str, note: str = "", threads: int | None = None) -> dict:
    """One record from the files a boot left behind."""
    out = boot_dir / "share" / "out"
    boot = read_json(boot_dir / "boot.json") or {}
    if not boot and "reboot: Power down" in read_text(boot_dir / "console.log"):
        # boot.py was stopped with the host's run.sh, the guest ran on and powered off by itself
        boot = {"outcome": "powered_off (host record lost: boot.py stopped; outcome from console.log)"}
    dmesg = read_text(out / "dmesg.txt")
    steps = []
    for row in read_jsonl(out / "steps.jsonl"):
        log = read_text(out / f"{row['step']}.log")
        step = {**row, "mem": read_json(out / f"{row['step']}.mem.json"), "tail": tail(log)}
        if row["step"] == "smoke":
            step["smoke"] = smoke_steps(log)
        if row["step"] == "predict":
            step["predictions"] = [l for l in log.splitlines() if "\t" in l]
        steps.append(step)
    # a step that was running when the machine was killed has no row: its log and samples remain
    done = {s["step"] for s in steps}
    for log_path in sorted(out.glob("*.log")):
        step_name = log_path.stem
        if step_name != "job" and step_name not in done:
            samples = read_jsonl(out / f"{step_name}.mem.jsonl")
            steps.append({"step": step_name, "rc": None, "unfinished": True, "tail": tail(read_text(log_path)),
                          "samples": len(samples),
                          "peak_rss_anon_bytes": max((r.get("RssAnon", 0) for r in samples), default=None)})
    return {"name": name, "job": job, "torch": torch, "qemu": qemu, "note": note, "threads": threads,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "outcome": boot.get("outcome"), "boot_wall_s": boot.get("wall_s"),
            "killed_after_match_s": boot.get("killed_after_match_s"),
            "job_rc": read_text(out / "job.rc").strip() or None,
            "uptime_at_job_s": (read_text(out / "boot.uptime").split() or [None])[0],
            "argv": boot.get("argv"), "board": board_facts(read_text(out / "board.txt")),
            "installed": read_text(out / "installed.txt").split(),
            "steps": steps, "run": train_summary(read_json(out / "run" / "summary.json")),
            "run_folder_at_boot": read_text(out / "run-folder-at-boot.txt") or None,
            "oom_kills": oom_kills(dmesg), "unhandled_signals": unhandled_signals(dmesg)}


def latest(records: list[dict]) -> dict[str, dict]:
    """The newest record of each boot name, in the order the boots first appeared."""
    by_name: dict[str, dict] = {}
    for record in records:
        by_name.pop(record["name"], None)
        by_name[record["name"]] = record
    return by_name


def mib(value) -> str:
    return "-" if value is None else f"{value / MIB:.0f} MiB"


def step_cell(step: dict | None) -> str:
    """A step's result in a table cell: ok, the signal that killed it, or its error."""
    if step is None:
        return "not run"
    rc = step.get("rc")
    if rc is None:
        return "no result (cut off by the machine's end, or still running at a snapshot)"
    if rc == 0:
        return f"ok ({step.get('wall_s', 0):.0f} s)"
    if rc == 132:
        where = (step.get("smoke") or {}).get("died_in_step")
        return f"**SIGILL** (exit 132){' in `' + where + '`' if where else ''}"
    if rc == 137:
        return "**killed** (exit 137, SIGKILL)"
    if rc == 139:
        return "**SIGSEGV** (exit 139)"
    if rc == 124:
        return f"timed out ({step.get('limit_s')} s)"
    said = [l for l in step.get("tail") or [] if l.strip() and not l.startswith("memwatch:")]
    last = (said or ["?"])[-1]   # the program's last words, not memwatch's summary
    return f"exit {rc}: {last[:120]}"


def steps_by_name(record: dict) -> dict[str, dict]:
    return {s["step"]: s for s in record.get("steps", [])}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _mem_line(step: dict) -> str:
    mem = step.get("mem") or {}
    return (f"kernel peak RSS (`ru_maxrss`) {mib(mem.get('ru_maxrss_bytes'))}, sampled peak `RssAnon` "
            f"{mib(mem.get('peak_rss_anon_bytes'))}, `MemAvailable` {mib(mem.get('mem_available_start_bytes'))} "
            f"at the start, lowest {mib(mem.get('mem_available_min_bytes'))} ({mem.get('samples', 0)} samples, 1 s apart)")


def _run_lines(run: dict | None, step: dict | None) -> list[str]:
    if not run:
        return ["- no summary.json (the run did not finish)"]
    lines = [f"- per-module test accuracy: " + ", ".join(
        f"module {m['module']} (blocks {m['blocks'][0]}-{m['blocks'][1] - 1}) {_pct(m['test_accuracy'])} in {m['time_s']:.0f} s"
        for m in run["modules"]),
        f"- best: module {(run.get('best') or {}).get('module')} at {_pct((run.get('best') or {}).get('test_accuracy'))}; "
        f"training wall time {run.get('wall_time_s')} s (TCG)",
        f"- the plan: cache `{run.get('cache')}` ({run.get('cache_reason')}), frozen modules `{run.get('offload')}`, "
        f"checkpointing {'on' if run.get('checkpoint_blocks') else 'off'}; {run.get('process_meaning')}",
        f"- the plan's whole-process estimate {mib(run.get('estimated_peak_bytes'))} (measured footprint of torch "
        f"and the model {mib(run.get('footprint_bytes'))})"]
    mem = (step or {}).get("mem") or {}
    if mem.get("peak_rss_anon_bytes") and run.get("estimated_peak_bytes"):
        ratio = run["estimated_peak_bytes"] / mem["peak_rss_anon_bytes"]
        lines.append(f"- the guest's measure: {_mem_line(step)}; estimate / sampled anonymous peak = **{ratio:.2f}x**")
    anon = [m.get("anon_bytes") for m in run["modules"] if m.get("anon_bytes")]
    if anon:
        lines.append(f"- edgetrgl's own reading at each module's end (`RssAnon`): " + ", ".join(mib(a) for a in anon))
    return lines


def _matrix_rows(boots: dict[str, dict]) -> list[str]:
    rows = ["| torch | threads | verdict | disk (site-packages) | import | `jit.script` | train (`pi4.toml`, rpi4-2gb) | export | predict | dmesg |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    # the latest full boot of each release and thread count
    by_torch = {(r["torch"], r.get("threads")): r for r in boots.values() if r["job"] == "full"}
    for record in sorted(by_torch.values(), key=lambda r: ([-int(x) for x in r["torch"].split(".")], r.get("threads") or 0)):
        steps = steps_by_name(record)
        smoke = steps.get("smoke")
        parsed = (smoke or {}).get("smoke") or {}
        ok = parsed.get("steps_ok", {})
        died = parsed.get("died_in_step")
        def smoke_cell(name):
            if smoke is None:
                return "not run"
            if name in ok:
                return f"ok ({ok[name]:.0f} s)"
            if died == name:
                return step_cell(smoke)
            if name in parsed.get("steps_failed", {}):
                return "failed: " + parsed["steps_failed"][name][:80]
            return "not reached"
        run = record.get("run")
        train = step_cell(steps.get("train"))
        if run and steps.get("train", {}).get("rc") == 0:
            train += f", best {_pct((run.get('best') or {}).get('test_accuracy'))}"
        site = next((s for s in record.get("installed", []) if s.startswith("torch==")), None)
        signals = "; ".join(record.get("unhandled_signals", []))[:200] or "-"
        state = verdict(record)[0]
        rows.append(f"| {record['torch']} | {record.get('threads') or '?'} | {'**runs**' if state == 'good' else '**avoid**' if state == 'avoid' else 'unfinished'} | "
                    f"{len(record.get('installed', []))} packages | {smoke_cell('import')} | "
                    f"{smoke_cell('jit_script')} | {train} | {step_cell(steps.get('export'))} | "
                    f"{step_cell(steps.get('predict'))} | {signals} |")
    return rows


def where_rows(folder: Path) -> list[str]:
    """The table of sigill_threads.sh's results (qemu-user smoke tests by thread count), if any."""
    rows = []
    for path in sorted(folder.glob("smoke-*.json")):
        r = read_json(path)
        if not r:
            continue
        where = r.get("where") or {}
        located = (f"`{Path(where['library']).name}` `{where.get('symbol')}`, word `{where.get('instruction_word')}`: "
                   f"{where.get('instruction')}") if where.get("library") else "-"
        rows.append(f"| {r['torch']} | {r['threads']} | {'exit 0' if r['rc'] == 0 else 'exit ' + str(r['rc'])} | "
                    f"{r.get('steps', '').strip()} | {located} |")
    if not rows:
        return []
    return ["## Where the threaded runs die (qemu-user, the same installs)", "",
            "`sigill_threads.sh VERSION THREADS` runs `smoke.py` under qemu-user with `QEMU_CPU=cortex-a72` on the "
            "site-packages of the emulated Pi's torch disk (with the A72's `MIDR_EL1` given to oneDNN), and with "
            "`STRACE=1` locates the SIGILL with `../where_sigill.py`.", "",
            "| torch | threads | smoke | steps (seconds, qemu-user) | the instruction that kills it |",
            "|---|---|---|---|---|", *rows, ""]


def report(records: list[dict], where_folder: Path | None = None) -> str:
    """RESULTS.md from the records (the latest record of each boot) and sigill_threads.sh's results."""
    boots = latest(records)
    first = next(iter(boots.values()), {})
    board = first.get("board") or {}
    out = ["# A Raspberry Pi 4 under full-system emulation (qemu-system-aarch64)", "",
           "Generated by `benchmarks/aarch64/system/results.py write` from `records.jsonl` (one record per boot, "
           "written by `run.sh` after each boot). Every cell is a measurement in the emulated machine.", "",
           "**What this is not.** TCG translates every guest instruction on a shared 2-core x86 host: the times "
           "below are emulated times under `nice -n 15`, not a Pi's (a Pi 4 is far faster than this). The machine "
           "is QEMU's `virt` board with a `cortex-a72` CPU model (ARMv8.0: no LSE atomics, as the BCM2711), not the "
           "Pi's SoC: no VideoCore, no SD card controller (the root disk is virtio-blk on a qcow2 file, the results "
           "share virtio-9p), no Raspberry Pi firmware or device tree, so `/proc/device-tree/model` does not say "
           "\"Raspberry Pi 4\". What it does show: the instruction set of the Pi 4's cores with a real Linux "
           "kernel (Debian's arm64 kernel: `/sys` CPU registers, the page cache, the OOM killer) deciding in "
           "2 GiB of RAM.", "",
           "## Machine", "",
           f"- qemu: `{first.get('qemu')}`; command line of each boot in `records.jsonl` (`argv`); see `boot.py`",
           f"- guest kernel: `{board.get('kernel')}`",
           f"- device tree model: `{board.get('model')}`; MIDR_EL1 `{board.get('midr_el1')}`; CPU part "
           f"`{board.get('cpu_part')}` (0xd08 = Cortex-A72); {board.get('nproc')} CPUs; MemTotal {mib(board.get('mem_total_bytes'))}",
           f"- CPU features (`/proc/cpuinfo`): `{board.get('features')}`",
           f"- guest Python: `{board.get('python')}`; torch threads: `OMP_NUM_THREADS` as in each boot's job.sh (run.sh `THREADS`)",
           "", "## Boots", ""]
    for record in boots.values():
        steps = steps_by_name(record)
        out += [f"### {record['name']} (job `{record['job']}`, torch {record['torch']})", "",
                f"- ended: **{record.get('outcome') or 'not yet (a snapshot of a running boot)'}**"
                f"{'' if record.get('boot_wall_s') is None else ' after ' + str(record.get('boot_wall_s')) + ' s of host time'}"
                f" (job started {record.get('uptime_at_job_s')} s after the kernel); job exit {record.get('job_rc')}; recorded {record['time']}"]
        if record.get("note"):
            out.append(f"- note: {record['note']}")
        if record.get("killed_after_match_s") is not None:
            out.append(f"- the host sent `quit` on the QEMU monitor {record['killed_after_match_s']} s after module 1's "
                       "result appeared in the log (a power cut: the guest's unwritten pages are lost)")
        if record.get("run_folder_at_boot"):
            out += ["- the run folder as the second boot found it:", "", "```", record["run_folder_at_boot"].rstrip(), "```"]
        for step in record.get("steps", []):
            command = step.get("command", "")
            out.append(f"- `{step['step']}`: {step_cell(step)}" + (f" - `{command}`" if command else ""))
            if step.get("mem"):
                out.append(f"  - memory: {_mem_line(step)}")
            if step.get("unfinished"):
                out.append(f"  - unfinished: {step.get('samples')} memory samples, peak `RssAnon` {mib(step.get('peak_rss_anon_bytes'))}")
            if step["step"] in ("detect", "export", "oom-planned", "oom", "killed", "resume") or step.get("rc"):
                out += ["", "  ```", *("  " + l for l in step.get("tail", [])), "  ```"]
            if step.get("predictions"):
                out += ["", "  ```", *("  " + l for l in step["predictions"]), "  ```"]
        if record.get("run"):
            out += _run_lines(record["run"], steps.get("train") or steps.get("resume"))
        for kill in record.get("oom_kills", []):
            out.append(f"- **guest kernel OOM kill** (dmesg): pid {kill['pid']} `{kill['name']}`, anon-rss {mib(kill['anon_rss_bytes'])}")
        for line in record.get("unhandled_signals", []):
            out.append(f"- dmesg: `{line}`")
        out.append("")
    out += ["## torch matrix (the whole system, Cortex-A72)", "",
            "Each release from the registry's aarch64 cp311 wheels, installed on the host for the board "
            "(`wheel_requires.py` reads the wheel's dependencies as pip on aarch64 would) onto its own read-only "
            "disk. import and `jit.script` from `benchmarks/aarch64/smoke.py`; train, export (TorchScript, checked "
            "against the run on the test set) and predict (6 PNG digits) from the `full` job.", "",
            *_matrix_rows(boots), ""]
    out += where_rows(where_folder or HERE / "where")
    return "\n".join(out)


FULL_STEPS = ("smoke", "train", "export", "predict")


def verdict(record: dict, required: tuple[str, ...] = FULL_STEPS) -> tuple[str, str]:
    """("good" | "avoid" | "unknown", why) for a `full` boot: good when the required steps ran to exit 0."""
    steps = steps_by_name(record)
    names = FULL_STEPS
    if all(steps.get(n, {}).get("rc") == 0 for n in required):
        ran = [n for n in names if steps.get(n, {}).get("rc") == 0]
        return "good", " and ".join(", ".join(ran).rsplit(", ", 1)) + " ran" + (
            "" if len(ran) == len(names) else f" ({', '.join(n for n in names if n not in ran)} not finished)")
    for name in names:
        step = steps.get(name)
        if step is not None and step.get("rc") not in (0, None):
            where = ((step.get("smoke") or {}).get("died_in_step") if name == "smoke" else None) or name
            signal_line = next(iter(record.get("unhandled_signals", [])), "")
            killer = {132: "Illegal instruction (SIGILL)", 139: "Segmentation fault (SIGSEGV)"}.get(step["rc"], f"exit {step['rc']}")
            return "avoid", f"{killer} in `{where}`" + (f"; dmesg: {signal_line}" if signal_line else "")
    return "unknown", "not every step ran"


def qemu_user_lines(where_folder: Path, qemu_user_results: Path) -> list[str]:
    """Header lines from the qemu-user runs: sigill_threads.sh's, and the one-thread study's SIGILLs on the A72."""
    lines = []
    for path in sorted(where_folder.glob("smoke-*.json")):
        r = read_json(path) or {}
        where = r.get("where") or {}
        at = f" at {Path(where['library']).name}, instruction {where.get('instruction_word')} (LSE atomic, ARMv8.1)" if where.get("library") else ""
        lines.append(f"#   qemu-user, torch {r.get('torch')}, {r.get('threads')} thread(s): "
                     f"{'smoke test runs' if r.get('rc') == 0 else 'AVOID: exit ' + str(r.get('rc')) + at}")
    study = read_json(qemu_user_results) or {}
    for r in study.get("records", []):
        if r.get("kind") == "smoke" and r.get("cpu") == "cortex-a72" and r.get("outcome") == "sigill":
            where = r.get("where_sigill") or {}
            lib = Path(where["library"]).name if where.get("library") else "?"
            lines.append(f"#   qemu-user, torch {r['torch']}, 1 thread: AVOID: SIGILL in {r.get('died_in_step')} at {lib}, "
                         f"instruction {where.get('instruction_word')} (LSE atomic, ARMv8.1)")
    return lines


def constraints(records: list[dict], torch: str, date: str, required: tuple[str, ...] = FULL_STEPS,
                where_folder: Path | None = None, qemu_user_results: Path | None = None) -> str:
    """devices/constraints-rpi4.txt: the measured install of ``torch`` pinned, the releases to avoid named."""
    full = [r for r in latest(records).values() if r["job"] == "full"]
    # per release: a boot that passed if any did (with its thread count), else the latest
    boots: dict[str, dict] = {}
    for r in full:
        if r["torch"] not in boots or verdict(boots[r["torch"]], required)[0] != "good":
            boots[r["torch"]] = r
    if torch not in boots or verdict(boots[torch], required)[0] != "good":
        raise SystemExit(f"results.py: torch {torch} has no `full` boot that passed {', '.join(required)}")
    lines = ["# A tested install for the Raspberry Pi 4 (Cortex-A72, ARMv8.0; 64-bit OS, Python 3.11):",
             "#   pip install -c devices/constraints-rpi4.txt ./edgetrgl",
             f"# Generated by benchmarks/aarch64/system/results.py constraints on {date} from the boots in",
             "# benchmarks/aarch64/system/RESULTS.md: Debian 12 arm64 under qemu-system-aarch64 -M virt -cpu cortex-a72",
             "# -m 2048 (emulated, not a board). Measured releases (registry aarch64 cp311 wheels):"]
    for record in sorted(full, key=lambda r: ([int(x) for x in r["torch"].split(".")], r.get("threads") or 0)):
        state, why = verdict(record, required)
        threads = f", {record['threads']} torch thread(s)" if record.get("threads") else ""
        lines.append(f"#   torch {record['torch']}{threads}: {'runs' if state == 'good' else 'AVOID' if state == 'avoid' else 'not finished'}: {why}")
    lines += qemu_user_lines(where_folder or HERE / "where", qemu_user_results or HERE.parent / "results.json")
    if boots[torch].get("threads"):
        lines.append(f"# The pinned release was measured with OMP_NUM_THREADS={boots[torch]['threads']}: set it so on the board.")
    lines.append(f"# Pinned below: torch {torch} and every package its measured install held.")
    pins = [p for p in boots[torch].get("installed", []) if "==" in p]
    return "\n".join(lines + sorted(pins, key=str.lower)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="append the record of one boot")
    c.add_argument("boot_dir", type=Path)
    c.add_argument("--name", required=True)
    c.add_argument("--job", required=True)
    c.add_argument("--torch", required=True)
    c.add_argument("--qemu", default="")
    c.add_argument("--records", type=Path, required=True)
    c.add_argument("--threads", type=int, help="OMP_NUM_THREADS in the guest")
    c.add_argument("--note", default="", help="a line for the report (why a boot was stopped)")
    w = sub.add_parser("write", help="write the report from the records")
    w.add_argument("--records", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    k = sub.add_parser("constraints", help="write the pip constraints of a measured release")
    k.add_argument("--records", type=Path, required=True)
    k.add_argument("--torch", required=True)
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--require", default=",".join(FULL_STEPS), help="steps that must have passed (default: all)")
    args = parser.parse_args(argv)
    if args.command == "constraints":
        today = datetime.date.today().isoformat()
        required = tuple(x for x in args.require.split(",") if x)
        if not required or set(required) - set(FULL_STEPS):
            parser.error(f"--require takes steps among {', '.join(FULL_STEPS)}")
        args.out.write_text(constraints(read_jsonl(args.records), args.torch, today, required))
        return 0
    if args.command == "collect":
        if not args.boot_dir.is_dir():
            parser.error(f"no boot folder {args.boot_dir}")
        record = collect(args.boot_dir, args.name, args.job, args.torch, args.qemu, args.note, args.threads)
        with args.records.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"results.py: {args.name}: {record['outcome']}, {len(record['steps'])} steps")
    else:
        args.out.write_text(report(read_jsonl(args.records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
