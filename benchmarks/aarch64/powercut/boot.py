"""Boot the emulated Pi 4 once and, if told, cut its power the moment the guest reports an operation.

    python3 boot.py --kernel K --initrd I --root ROOT.qcow2 --torch TORCH.img --data DATA.img
                    --share DIR --record BOOT.json [--cut-when REGEX --watch FILE] [--timeout S]

qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 4 -m 2048 under TCG. The data disk is attached with
``cache=none`` (O_DIRECT: the host keeps no copy of the guest's writes in its page cache), so what
the guest had not flushed lives only in the guest's memory. With ``--cut-when``, the host polls
``--watch`` (a file the guest writes on the 9p share, which has no cache either) every 50 ms and,
once REGEX appears, sends QEMU SIGKILL: a power cut, the guest's page cache and its disk queue are
lost; with ``--cut-delay S`` it waits S seconds first (the guest's kernel meanwhile writes back
what it holds: ext4 commits its journal every 5 s, dirty data older than 30 s is written). The
record (JSON) says how the boot ended (``powered_off``, ``cut``, ``timed_out``,
``qemu_failed``), the matching line, the host seconds to it and from it to QEMU's death.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

CMDLINE = "root=/dev/vda rw console=ttyAMA0 init=/sbin/edgetrgl-init panic=1 loglevel=4"


def qemu_argv(args: argparse.Namespace, console: str) -> list[str]:
    """The qemu-system-aarch64 command line: disks in the order guest_init.sh expects (vda, vdb, vdc)."""
    return ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "4", "-m", "2048",
            "-accel", "tcg,thread=multi", "-display", "none", "-no-reboot", "-nic", "none",
            "-serial", f"file:{console}", "-monitor", "none",
            "-kernel", args.kernel, "-initrd", args.initrd, "-append", CMDLINE,
            "-drive", f"file={args.root},if=virtio,format=qcow2,cache=writeback",
            "-drive", f"file={args.torch},if=virtio,format=raw,readonly=on",
            "-drive", f"file={args.data},if=virtio,format=raw,cache=none,aio=native",
            "-fsdev", f"local,id=host,path={args.share},security_model=none",
            "-device", "virtio-9p-pci,fsdev=host,mount_tag=host"]


def matching_line(path: str, pattern: re.Pattern) -> str | None:
    """The first line of the file that matches (absent file: none)."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if pattern.search(line):
                    return line.strip()
    except OSError:
        pass
    return None


def _stop(signum, frame):
    raise SystemExit(128 + signum)  # run the cleanup below: never leave a guest running


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--kernel", "--initrd", "--root", "--torch", "--data", "--share", "--record"):
        p.add_argument(name, required=True)
    p.add_argument("--cut-when", help="regex: cut the power once a line of --watch matches it")
    p.add_argument("--watch", help="the file on the share to watch for --cut-when")
    p.add_argument("--cut-delay", type=float, default=0.0,
                   help="host seconds between the match and the cut (0: at once)")
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args(argv)
    if bool(args.cut_when) != bool(args.watch):
        p.error("--cut-when and --watch go together")
    signal.signal(signal.SIGTERM, _stop)
    console = os.path.join(os.path.dirname(os.path.abspath(args.record)), "console.log")
    argv_q = qemu_argv(args, console)
    pattern = re.compile(args.cut_when) if args.cut_when else None
    start = time.monotonic()
    proc = subprocess.Popen(["nice", "-n", "15"] + argv_q, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outcome, line, seen_s, cut_s = None, None, None, None
    try:
        while proc.poll() is None:
            if time.monotonic() - start > args.timeout:
                outcome = "timed_out"
                break
            if pattern is not None:
                if seen_s is None:
                    line = matching_line(args.watch, pattern)
                    seen_s = None if line is None else time.monotonic() - start
                if seen_s is not None and time.monotonic() - start - seen_s >= args.cut_delay:
                    proc.kill()  # SIGKILL to QEMU itself (nice exec()s it): the power cut
                    proc.wait()
                    cut_s = time.monotonic() - start
                    outcome = "cut"
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if outcome is None:
        done = os.path.exists(os.path.join(args.share, "out", "job.rc"))
        outcome = "powered_off" if proc.returncode == 0 and done else "qemu_failed"
    record = {"outcome": outcome, "qemu_rc": proc.returncode, "wall_s": round(time.monotonic() - start, 2),
              "cut_line": line, "seen_at_s": None if seen_s is None else round(seen_s, 3),
              "cut_delay_s": args.cut_delay, "seen_to_dead_s": None if cut_s is None else round(cut_s - seen_s, 3),
              "qemu_output": (proc.stdout.read().decode(errors="replace") if proc.stdout else "")[-2000:],
              "argv": argv_q}
    with open(args.record, "w") as f:
        json.dump(record, f, indent=1)
    print(f"boot.py: {outcome} after {record['wall_s']} s (qemu exit {proc.returncode})"
          + (f"; cut {record['seen_to_dead_s']} s after {line!r}" if line else ""), flush=True)
    return 0 if outcome in ("powered_off", "cut") else 1


if __name__ == "__main__":
    sys.exit(main())
