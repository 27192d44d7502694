"""Run a command inside a memory cgroup and report what the kernel saw: peak, limit, OOM kills.

The honest proof that a run "fits in 2 GB" on a board is the kernel's own accounting and OOM
killer. This script, run as root, creates a cgroup under its own (cgroup v2
preferred, v1 fallback), sets a memory limit with swap disabled, optionally throttles the disk
that holds a folder (the activation cache's) to a board's storage speed, puts the child into the
cgroup *before* it execs (so no allocation escapes the count), waits, reads the peak and the OOM
kill count, and removes the cgroup, also on failure or Ctrl-C.

    python benchmarks/devices/cgroup_proof.py --limit 700MiB -- edgetrgl train --epochs 1
    python benchmarks/devices/cgroup_proof.py --limit 2GiB --throttle-read 40MB --throttle-write 20MB \\
        --throttle-path /tmp -- edgetrgl train --cache disk

It prints one JSON object: limit, peak, OOM kills, exit code (negative: killed by that signal), wall
time, cgroup version. Throttle speeds are per second (``40MB`` = 40*10^6 B/s).

Caveats. The kernel's peak counts page cache (files the run writes), which it can reclaim; the
result also gives the largest anonymous memory sampled every 0.2 s. On cgroup v1, blkio throttling
applies to direct I/O, to reads that miss the page cache and to writes the process flushes itself
(fsync: checked with dd, 9 MB/s under a 10 MB/s limit); buffered writes left to the kernel's
background writeback are not charged to the cgroup and escape the throttle. cgroup v2 (io.max)
throttles writeback too.

``--sd-disk FOLDER`` is the honest way on v1: it mounts a fresh ext4 image at FOLDER through a loop
device (``losetup --direct-io=on``, so the image's own file is not cached twice) and throttles *that
loop device* in the **root** blkio cgroup, where the kernel's flusher threads run: every byte that
reaches FOLDER's disk, background writeback included, and every read that misses the page cache,
goes at the given speeds. Point the run's cache there (``--cache-dir FOLDER/cache``). The image,
the mount, the loop device and the throttle rules are removed on exit.

    python benchmarks/devices/cgroup_proof.py --limit 700MiB --sd-disk /tmp/sd --throttle-read 40MB \
        --throttle-write 20MB -- edgetrgl train --cache disk --cache-dir /tmp/sd/cache
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
BLKIO_ROOT = ROOT / "blkio"  # v1: the root blkio group, where the kernel's writeback threads run


@dataclass
class CgroupResult:
    """What one confined run gave. Sizes in bytes, speeds in bytes/s, times in seconds."""

    command: list[str]
    cgroup_version: int
    limit_bytes: int
    peak_bytes: int | None
    oom_kills: int | None
    exit_code: int  # negative: killed by that signal (-9: SIGKILL, what the OOM killer sends)
    wall_s: float
    # The kernel's peak counts page cache too (files the run wrote: checkpoints, a disk cache), which
    # the kernel can reclaim; anonymous memory it cannot (no swap). Sampled every 0.2 s, so a
    # shorter spike can be missed: a lower bound.
    max_anon_bytes_sampled: int | None = None
    throttle: dict = field(default_factory=dict)

    @property
    def oom_killed(self) -> bool:
        return bool(self.oom_kills) or self.exit_code == -signal.SIGKILL


def cgroup_version(root: Path = ROOT) -> int | None:
    """2 if the unified hierarchy has the memory controller, 1 if a v1 memory hierarchy is mounted, else None."""
    if "memory" in _read(root / "cgroup.controllers", "").split():
        return 2
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return 1
    return None


def _read(path: Path, default: str | None = None) -> str:
    try:
        return path.read_text()
    except OSError:
        if default is None:
            raise
        return default


def _own_path(controller: str | None) -> str:
    """This process's cgroup path for ``controller`` (v1) or the unified one (``None``), from /proc/self/cgroup."""
    for line in _read(Path("/proc/self/cgroup"), "").splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or (controller and controller in controllers.split(",")):
            return path.lstrip("/")
    return ""


def _block_device(path: str) -> str:
    """``MAJ:MIN`` of the whole disk holding ``path`` (throttling is per disk, not per partition)."""
    dev = os.stat(path).st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if (sysfs / "partition").exists():
        return _read(sysfs.resolve().parent / "dev").strip()
    return f"{os.major(dev)}:{os.minor(dev)}"


class Cgroup:
    """A temporary cgroup with a memory limit (swap off) and optional disk throttling.

    Use as a context manager: the cgroup exists inside the ``with`` block and is removed on exit,
    after any process still in it has been killed.
    """

    def __init__(self, limit_bytes: int, *, read_bps: int | None = None, write_bps: int | None = None,
                 throttle_path: str = "/tmp", root: Path = ROOT) -> None:
        self.version = cgroup_version(root)
        if self.version is None:
            raise RuntimeError(f"no cgroup memory controller under {root}")
        self.limit_bytes, self.read_bps, self.write_bps = limit_bytes, read_bps, write_bps
        self.device = _block_device(throttle_path) if (read_bps or write_bps) else None
        self.name = f"edgetrgl-proof-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if self.version == 2:
            self.dirs = {"unified": root / _own_path(None) / self.name}
        else:
            self.dirs = {"memory": root / "memory" / _own_path("memory") / self.name}
            if self.device:
                self.dirs["blkio"] = root / "blkio" / _own_path("blkio") / self.name

    # -- set up and tear down -------------------------------------------------------------------
    def __enter__(self) -> "Cgroup":
        try:
            self._create()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _create(self) -> None:
        if self.version == 2:
            group = self.dirs["unified"]
            # v2 hands a controller to children only when the parent enables it in subtree_control.
            wanted = "+memory" + (" +io" if self.device else "")
            (group.parent / "cgroup.subtree_control").write_text(wanted)
            group.mkdir()
            (group / "memory.max").write_text(str(self.limit_bytes))
            if (group / "memory.swap.max").exists():
                (group / "memory.swap.max").write_text("0")
            if self.device:
                limits = [f"{k}={v}" for k, v in (("rbps", self.read_bps), ("wbps", self.write_bps)) if v]
                (group / "io.max").write_text(f"{self.device} {' '.join(limits)}")
        else:
            memory = self.dirs["memory"]
            memory.mkdir()
            (memory / "memory.limit_in_bytes").write_text(str(self.limit_bytes))
            # memsw = memory + swap; equal to the memory limit means no swap for this group.
            if (memory / "memory.memsw.limit_in_bytes").exists():
                (memory / "memory.memsw.limit_in_bytes").write_text(str(self.limit_bytes))
            (memory / "memory.swappiness").write_text("0")
            if self.device:
                blkio = self.dirs["blkio"]
                blkio.mkdir()
                if self.read_bps:
                    (blkio / "blkio.throttle.read_bps_device").write_text(f"{self.device} {self.read_bps}")
                if self.write_bps:
                    (blkio / "blkio.throttle.write_bps_device").write_text(f"{self.device} {self.write_bps}")

    def remove(self) -> None:
        """Kill whatever is still in the cgroup (we started it), then remove the cgroup's folders."""
        for group in self.dirs.values():
            if not group.exists():
                continue
            for _ in range(50):
                pids = [int(p) for p in _read(group / "cgroup.procs", "").split()]
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
            try:
                group.rmdir()
            except OSError as err:
                print(f"cgroup_proof: could not remove {group}: {err}", file=sys.stderr)

    # -- use ------------------------------------------------------------------------------------
    def join(self) -> None:
        """Move the calling process into the cgroup (used in the child between fork and exec)."""
        for group in self.dirs.values():
            (group / "cgroup.procs").write_text(str(os.getpid()))

    def peak_bytes(self) -> int | None:
        if self.version == 2:
            text = _read(self.dirs["unified"] / "memory.peak", "")  # kernel >= 5.19
            return int(text) if text.strip() else None
        return int(_read(self.dirs["memory"] / "memory.max_usage_in_bytes"))

    def oom_kills(self) -> int | None:
        """OOM kills inside the group (v2 memory.events, v1 memory.oom_control on kernels >= 4.13)."""
        path = self.dirs["unified"] / "memory.events" if self.version == 2 else self.dirs["memory"] / "memory.oom_control"
        for line in _read(path, "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None

    def anon_bytes(self) -> int | None:
        """Anonymous memory charged to the group now (v2 ``anon``; v1 ``total_rss``), or ``None``."""
        path = self.dirs["unified"] / "memory.stat" if self.version == 2 else self.dirs["memory"] / "memory.stat"
        wanted = "anon" if self.version == 2 else "total_rss"
        for line in _read(path, "").splitlines():
            key, _, value = line.partition(" ")
            if key == wanted:
                return int(value)
        return None

    def run(self, command: list[str], *, timeout_s: float | None = None, sample_s: float = 0.2,
            **popen) -> CgroupResult:
        """Run ``command`` inside the cgroup and wait for it; the child joins before exec."""
        started = time.perf_counter()
        deadline = None if timeout_s is None else started + timeout_s
        proc = subprocess.Popen(command, preexec_fn=self.join, **popen)
        max_anon = None
        try:
            while True:
                anon = self.anon_bytes()
                if anon is not None:
                    max_anon = anon if max_anon is None else max(max_anon, anon)
                try:
                    exit_code = proc.wait(timeout=sample_s)
                    break
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.perf_counter() > deadline:
                        raise
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        wall_s = time.perf_counter() - started
        throttle = {"device": self.device, "read_bps": self.read_bps, "write_bps": self.write_bps} if self.device else {}
        return CgroupResult(command=list(command), cgroup_version=self.version, limit_bytes=self.limit_bytes,
                            peak_bytes=self.peak_bytes(), oom_kills=self.oom_kills(), exit_code=exit_code,
                            wall_s=round(wall_s, 2), max_anon_bytes_sampled=max_anon, throttle=throttle)


def _sectors(stat: Path) -> tuple[int, int]:
    """Sectors (512 B) read and written so far by a block device (fields 3 and 7 of its stat file)."""
    fields = _read(stat).split()
    return int(fields[2]), int(fields[6])


@contextlib.contextmanager
def sd_disk(folder: str, *, read_bps: int | None, write_bps: int | None, size_bytes: int = 2 * 2**30):
    """A fresh ext4 file system on a loop device mounted at ``folder``, throttled for every writer.

    Unlike a per-cgroup blkio rule (which background writeback escapes on cgroup v1), the limits
    are set on the loop device in the root blkio group, so the flusher threads are throttled too.
    Yields ``{"device", "read_bps", "write_bps", "how"}``; everything is undone on exit.
    """
    mount = Path(folder)
    mount.mkdir(parents=True, exist_ok=False)  # never mount over someone's folder
    image = mount.with_name(mount.name + ".img")
    loop, mounted, rules = None, False, []
    try:
        with open(image, "wb") as fh:
            fh.truncate(size_bytes)  # sparse: costs only what the run writes
        # inode tables and journal zeroed now, on the image: the kernel's lazy init would otherwise write
        # ~100 MiB through the throttle in the run's first seconds
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image)], check=True)
        loop = subprocess.run(["losetup", "-f", "--show", "--direct-io=on", str(image)], check=True,
                              capture_output=True, text=True).stdout.strip()
        subprocess.run(["mount", loop, str(mount)], check=True)
        mounted = True
        device = f"{os.major(os.stat(loop).st_rdev)}:{os.minor(os.stat(loop).st_rdev)}"
        for name, bps in (("blkio.throttle.read_bps_device", read_bps), ("blkio.throttle.write_bps_device", write_bps)):
            if bps:
                (BLKIO_ROOT / name).write_text(f"{device} {bps}")
                rules.append(name)
        facts = {"device": device, "read_bps": read_bps, "write_bps": write_bps,
                 "how": f"ext4 on {loop} (direct-io image), throttled in the root blkio group"}
        # a loop device's counters live as long as /dev/loopN, across images: count from here
        stat_path = Path("/sys/block") / Path(loop).name / "stat"
        read0, written0 = _sectors(stat_path)
        yield facts
        subprocess.run(["sync", "-f", str(mount)], check=False)  # what is still dirty reaches the disk, and counts
        read1, written1 = _sectors(stat_path)
        facts.update(disk_read_bytes=(read1 - read0) * 512, disk_written_bytes=(written1 - written0) * 512)
    finally:
        for name in rules:
            (BLKIO_ROOT / name).write_text(f"{device} 0")  # 0 removes the rule
        if mounted:
            subprocess.run(["umount", str(mount)], check=False)
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False)
        image.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            mount.rmdir()


def run_in_cgroup(command: list[str], limit_bytes: int, *, read_bps: int | None = None, write_bps: int | None = None,
                  throttle_path: str = "/tmp", timeout_s: float | None = None, **popen) -> CgroupResult:
    """Create a cgroup, run ``command`` in it, remove the cgroup, return what the kernel measured."""
    with Cgroup(limit_bytes, read_bps=read_bps, write_bps=write_bps, throttle_path=throttle_path) as group:
        return group.run(command, timeout_s=timeout_s, **popen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", required=True, help="memory limit, e.g. 700MiB, 2GiB")
    parser.add_argument("--throttle-read", help="disk read speed per second, e.g. 40MB")
    parser.add_argument("--throttle-write", help="disk write speed per second, e.g. 20MB")
    parser.add_argument("--throttle-path", default="/tmp", help="a path on the disk to throttle (default /tmp)")
    parser.add_argument("--sd-disk", metavar="FOLDER",
                        help="mount a fresh loop-device file system here and apply --throttle-* to it for every "
                             "writer, background writeback included (cgroup v1); FOLDER must not exist")
    parser.add_argument("--timeout", type=float, help="kill the command after this many seconds")
    parser.add_argument("--json", help="also append the result as one JSON line to this file")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    from edgetrgl.config import parse_size  # units parsed once, the package's way
    from edgetrgl.errors import UserError

    try:
        limit = parse_size(args.limit)
        read_bps = parse_size(args.throttle_read) if args.throttle_read else None
        write_bps = parse_size(args.throttle_write) if args.throttle_write else None
    except UserError as err:
        parser.error(str(err))
    if os.geteuid() != 0:
        parser.error("creating a cgroup needs root")
    if args.sd_disk:
        with sd_disk(args.sd_disk, read_bps=read_bps, write_bps=write_bps) as disk:
            result = run_in_cgroup(command, limit, timeout_s=args.timeout)
        result.throttle = disk
    else:
        result = run_in_cgroup(command, limit, read_bps=read_bps, write_bps=write_bps,
                               throttle_path=args.throttle_path, timeout_s=args.timeout)
    payload = {**asdict(result), "oom_killed": result.oom_killed,
               "peak_mib": None if result.peak_bytes is None else round(result.peak_bytes / 2**20, 1),
               "limit_mib": round(limit / 2**20, 1),
               "max_anon_mib_sampled": None if result.max_anon_bytes_sampled is None
               else round(result.max_anon_bytes_sampled / 2**20, 1)}
    line = json.dumps(payload)
    print(line)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
