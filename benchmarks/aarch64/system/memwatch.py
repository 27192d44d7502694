"""Run a command in the guest and watch its memory the way the guest kernel sees it.

    python3 memwatch.py --out FILE.json [--every 1.0] -- CMD ARGS...

Every ``--every`` seconds it reads the child's ``/proc/PID/status`` (``VmRSS``, ``RssAnon``,
``VmHWM``) and the guest's ``MemAvailable`` and appends one JSON line to ``FILE.jsonl`` (flushed, so a
guest killed mid-run leaves what it had). When the child ends it writes ``FILE.json``: the exit
status (128 + signal for a killed child, as a shell reports it), the kernel's own peak resident set
of the child (``ru_maxrss`` from ``wait4``), the sampled peaks and the lowest ``MemAvailable``.
The child's output goes to this process's stdout and stderr. Standard library only: it runs on the
guest's system Python, outside the torch under test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

KIB = 1024


def parse_kib_fields(text: str, names: tuple[str, ...]) -> dict[str, int]:
    """The ``Name:  123 kB`` fields of a ``/proc`` status or meminfo text, in bytes."""
    found = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in names:
            parts = rest.split()
            if parts and parts[0].isdigit():
                found[key] = int(parts[0]) * KIB
    return found


def sample(pid: int, proc: str = "/proc") -> dict[str, int | float]:
    """One reading: the process's memory fields and the machine's MemAvailable (bytes)."""
    row: dict[str, int | float] = {"t": round(time.monotonic(), 2)}
    try:
        with open(f"{proc}/{pid}/status") as f:
            row.update(parse_kib_fields(f.read(), ("VmRSS", "RssAnon", "VmHWM")))
    except OSError:  # the child is gone, or a zombie
        pass
    with open(f"{proc}/meminfo") as f:
        row.update(parse_kib_fields(f.read(), ("MemAvailable", "MemFree")))
    return row


def summarize(rows: list[dict], rc: int, maxrss_kib: int, wall_s: float) -> dict:
    """The summary of a watched run from its samples and its wait4 figures."""
    def peak(key):
        values = [r[key] for r in rows if key in r]
        return max(values) if values else None

    available = [r["MemAvailable"] for r in rows if "MemAvailable" in r]
    return {"rc": rc, "wall_s": round(wall_s, 1), "samples": len(rows),
            "ru_maxrss_bytes": maxrss_kib * KIB,
            "peak_rss_anon_bytes": peak("RssAnon"), "peak_vm_hwm_bytes": peak("VmHWM"),
            "peak_vm_rss_bytes": peak("VmRSS"),
            "mem_available_start_bytes": available[0] if available else None,
            "mem_available_min_bytes": min(available) if available else None}


def exit_status(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="summary file (FILE.json; samples in FILE.jsonl)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    if args.every <= 0:
        parser.error("--every must be positive")

    start = time.monotonic()
    child = subprocess.Popen(command)
    rows: list[dict] = []
    done = threading.Event()
    samples_path = os.path.splitext(args.out)[0] + ".jsonl"

    def watch():
        with open(samples_path, "w") as f:
            while not done.is_set():
                row = sample(child.pid)
                rows.append(row)
                f.write(json.dumps(row) + "\n")
                f.flush()
                done.wait(args.every)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = exit_status(status)  # so Popen does not wait again
    done.set()
    watcher.join(timeout=10)
    summary = summarize(rows, child.returncode, usage.ru_maxrss, time.monotonic() - start)
    summary["command"] = command
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"memwatch: exit {summary['rc']}, ru_maxrss {summary['ru_maxrss_bytes'] / 2**20:.1f} MiB, "
          f"peak RssAnon {(summary['peak_rss_anon_bytes'] or 0) / 2**20:.1f} MiB, "
          f"min MemAvailable {(summary['mem_available_min_bytes'] or 0) / 2**20:.1f} MiB", file=sys.stderr)
    return summary["rc"]


if __name__ == "__main__":
    sys.exit(main())
