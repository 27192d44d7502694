"""Boot the emulated Pi 4 once: qemu-system-aarch64 -M virt -cpu cortex-a72, bounded in time.

    python3 boot.py --kernel K --initrd I --root ROOT.qcow2 --share DIR --record BOOT.json
                    [--disk IMG ...] [--timeout S] [--kill-when REGEX --kill-file FILE [--kill-delay S]]

The guest's console goes to ``DIR/../console.log``, the QEMU monitor to a unix socket beside it.
With ``--kill-when``, once REGEX appears in ``--kill-file`` (a file the guest writes on the share)
the host waits ``--kill-delay`` seconds and sends ``quit`` on the monitor: the machine stops at
once, as at a power cut (whatever the guest had not written to its disks is lost). The record
(JSON) says how the boot ended: ``powered_off`` (the guest's job ran and it switched itself off),
``killed`` (quit on the monitor), ``timed_out`` (the host's limit), or ``qemu_failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

CMDLINE = "root=/dev/vda rw console=ttyAMA0 init=/sbin/edgetrgl-init panic=1 loglevel=4"


def qemu_argv(args: argparse.Namespace, console: str, monitor: str) -> list[str]:
    """The qemu-system-aarch64 command line for these arguments."""
    argv = ["qemu-system-aarch64", "-M", "virt", "-cpu", args.cpu, "-smp", str(args.smp),
            "-m", str(args.mem_mib), "-accel", "tcg,thread=multi",
            "-display", "none", "-no-reboot", "-nic", "none",
            "-serial", f"file:{console}", "-monitor", f"unix:{monitor},server,nowait",
            "-kernel", args.kernel, "-initrd", args.initrd, "-append", CMDLINE,
            "-drive", f"file={args.root},if=virtio,format=qcow2,cache=writeback"]
    for disk in args.disk:
        argv += ["-drive", f"file={disk},if=virtio,format=raw,readonly=on"]
    argv += ["-fsdev", f"local,id=host,path={args.share},security_model=none",
             "-device", "virtio-9p-pci,fsdev=host,mount_tag=host"]
    return argv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments, checked: a kill pattern needs the file it is looked for in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--initrd", required=True)
    parser.add_argument("--root", required=True, help="the root disk (qcow2 overlay)")
    parser.add_argument("--disk", action="append", default=[], help="an extra read-only raw disk")
    parser.add_argument("--share", required=True, help="the folder the guest mounts over 9p")
    parser.add_argument("--record", required=True, help="JSON file to write how the boot went")
    parser.add_argument("--cpu", default="cortex-a72")
    parser.add_argument("--smp", type=int, default=4)
    parser.add_argument("--mem-mib", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=7200, help="seconds before the host stops the guest")
    parser.add_argument("--nice", type=int, default=15)
    parser.add_argument("--kill-when", help="regex: quit the machine once it appears in --kill-file")
    parser.add_argument("--kill-file", help="file on the share to watch for --kill-when")
    parser.add_argument("--kill-delay", type=float, default=0.0, help="seconds between the match and the quit")
    args = parser.parse_args(argv)
    if bool(args.kill_when) != bool(args.kill_file):
        parser.error("--kill-when and --kill-file go together")
    if args.timeout <= 0 or args.kill_delay < 0 or args.smp < 1 or args.mem_mib < 128:
        parser.error("--timeout must be positive, --kill-delay >= 0, --smp >= 1, --mem-mib >= 128")
    return args


def found_in(path: str, pattern: re.Pattern) -> bool:
    """Whether ``pattern`` occurs in the file (absent file: no)."""
    try:
        with open(path, errors="replace") as f:
            return pattern.search(f.read()) is not None
    except OSError:
        return False


def monitor_quit(path: str) -> None:
    """Send ``quit`` on the QEMU monitor's unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"quit\n")
        time.sleep(1)


def outcome(rc: int | None, killed: bool, timed_out: bool, job_rc_exists: bool) -> str:
    """How a boot ended, from QEMU's exit and what the host did."""
    if timed_out:
        return "timed_out"
    if killed:
        return "killed"
    if rc == 0 and job_rc_exists:
        return "powered_off"
    return "qemu_failed"


def _stop(signum, frame):
    raise SystemExit(128 + signum)  # run the cleanup below: a background job ignores SIGINT, so TERM it


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    base = os.path.dirname(os.path.abspath(args.record))
    console, monitor = os.path.join(base, "console.log"), os.path.join(base, "monitor.sock")
    argv_q = qemu_argv(args, console, monitor)
    pattern = re.compile(args.kill_when) if args.kill_when else None
    start = time.monotonic()
    proc = subprocess.Popen(["nice", "-n", str(args.nice)] + argv_q, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    killed = timed_out = False
    matched_at = None
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now - start > args.timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                break
            if pattern is not None and matched_at is None and found_in(args.kill_file, pattern):
                matched_at = now
                print(f"boot.py: {args.kill_when!r} seen after {now - start:.0f} s; quit in {args.kill_delay:.0f} s", flush=True)
            if matched_at is not None and not killed and now - matched_at >= args.kill_delay:
                monitor_quit(monitor)
                killed = True
            time.sleep(2)
    finally:
        if proc.poll() is None:  # this script was interrupted: never leave a guest running
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    qemu_out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    record = {"outcome": outcome(proc.returncode, killed, timed_out, os.path.exists(os.path.join(args.share, "out", "job.rc"))),
              "qemu_rc": proc.returncode, "wall_s": round(time.monotonic() - start, 1),
              "killed_after_match_s": round(time.monotonic() - matched_at, 1) if matched_at and killed else None,
              "qemu_output": qemu_out[-2000:], "argv": argv_q}
    with open(args.record, "w") as f:
        json.dump(record, f, indent=1)
    print(f"boot.py: {record['outcome']} after {record['wall_s']} s (qemu exit {proc.returncode})", flush=True)
    return 0 if record["outcome"] in ("powered_off", "killed") else 1


if __name__ == "__main__":
    sys.exit(main())
