"""What benchmarks/chaos.py borrows from the kernel, and gives back however it ends.

- :class:`SmallDisk`: the runs' file system, small enough to fill. ext4 on a loop device (a sparse
  image file, ``losetup``, ``mkfs.ext4``): a real journaling file system with fsync, delayed
  allocation and ENOSPC where an SD card's would have them. Without loop devices it falls back to a
  tmpfs; without root to no disk of its own (the disk-full faults are then skipped, and said so).
- :class:`MemoryCgroup`: a memory cgroup (v1 under ``/sys/fs/cgroup/memory``, else v2) a launch
  runs in, whose limit the harness lowers under the process's usage so the kernel's OOM killer
  kills it, then lifts again.
- :func:`on_exit`: SIGTERM, SIGINT and SIGHUP end the harness through its ``finally`` blocks
  (Python's handlers, unlike SIG_IGN, are reset by exec: the launches get the default dispositions,
  as under systemd), so every mount, loop device and cgroup is given back.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DISK_MIB = 96  # one tiny run and the filler; small enough that filling it takes no time


def _sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True)


class SmallDisk:
    """A small file system mounted at ``where``: ext4 on a loop device, else a tmpfs, else none.

    ``kind`` says which (for the report); ``mounted`` is False for none. :meth:`close` unmounts it
    and detaches the loop device; it is safe to call twice.
    """

    def __init__(self, where: Path, size_mib: int = DISK_MIB) -> None:
        self.path, self.size_mib = where, size_mib
        self.image: Path | None = None
        self.device = ""
        self.mounted = False
        where.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            self.kind = "none (not root: the runs are on the work folder's file system, no disk-full faults)"
            return
        why = self._ext4()
        if self.mounted:
            self.kind = f"ext4 on a loop device ({size_mib} MiB image)"
        elif _sh("mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(where)).returncode == 0:
            self.mounted = True
            self.kind = f"a {size_mib} MiB tmpfs (no ext4 on a loop device: {why})"
        else:
            self.kind = f"none (neither ext4 on a loop device nor a tmpfs: {why})"

    def _ext4(self) -> str:
        """Mount ext4 on a loop device; "" on success, else why not (everything half done undone)."""
        self.image = self.path.with_name(self.path.name + ".img")
        with self.image.open("wb") as fh:
            fh.truncate(self.size_mib << 20)  # sparse: takes disk space only as it is written
        # -m 0: no blocks reserved for root (the runs are root's: they would write into the reserve)
        mkfs = _sh("mkfs.ext4", "-q", "-F", "-m", "0", str(self.image))
        if mkfs.returncode:
            return self._undo(f"mkfs.ext4: {mkfs.stderr.strip()}")
        loop = _sh("losetup", "-f", "--show", str(self.image))
        if loop.returncode:
            return self._undo(f"losetup: {loop.stderr.strip()}")
        self.device = loop.stdout.strip()
        mount = _sh("mount", "-t", "ext4", self.device, str(self.path))
        if mount.returncode:
            return self._undo(f"mount: {mount.stderr.strip()}")
        self.mounted = True
        return ""

    def _undo(self, why: str) -> str:
        self.close()
        return why

    def close(self) -> None:
        if self.mounted:
            gc.collect()  # a checkpoint this process read may still be mapped
            for _ in range(40):  # a killed launch's last files close as it exits
                if _sh("umount", str(self.path)).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                _sh("umount", "-l", str(self.path))  # something still holds a file: detach it anyway
                print(f"chaos: {self.path} was busy: unmounted lazily", file=sys.stderr)
            self.mounted = False
        if self.device:
            _sh("losetup", "-d", self.device)  # after a lazy unmount: detached when the last user lets go
            for _ in range(40):
                if self.image is None or str(self.image) not in _sh("losetup", "-j", str(self.image)).stdout:
                    break
                time.sleep(0.25)
            self.device = ""
        if self.image is not None:
            self.image.unlink(missing_ok=True)
            self.image = None


class MemoryCgroup:
    """A memory cgroup under this process's own, its limit lowered to force the OOM killer.

    ``available`` is False (and ``why`` says why) where none can be made (not root, no memory
    controller). :meth:`wrap` runs a command inside it; :meth:`close` removes it.
    """

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        self.v2 = False
        self.why = ""
        base = self._own()
        if base is None:
            self.why = "no memory cgroup controller"
            return
        try:
            (base / name).mkdir(exist_ok=True)
        except OSError as exc:
            self.why = f"cannot create a memory cgroup: {exc.strerror}"
            return
        self.path = base / name
        if not self.v2:
            try:
                self._write("memory.swappiness", "0")  # the OOM killer, not swap (there may be none anyway)
            except OSError:
                pass  # a kernel without the knob: the limit alone still ends in the OOM killer where there is no swap

    @property
    def available(self) -> bool:
        return self.path is not None

    def _own(self) -> Path | None:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, where = line.split(":", 2)
            if "memory" in controllers.split(",") and Path("/sys/fs/cgroup/memory").is_dir():
                return Path("/sys/fs/cgroup/memory") / where.lstrip("/")
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):  # v2: the memory controller must be enabled for children
                base = Path("/sys/fs/cgroup") / line[3:].strip().lstrip("/")
                if "memory" in (base / "cgroup.subtree_control").read_text(errors="replace").split():
                    self.v2 = True
                    return base
        return None

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run inside the cgroup from its first instruction (the shell joins it, then execs)."""
        assert self.path is not None
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.path), *command]

    def _read(self, name: str) -> str:
        assert self.path is not None
        return (self.path / name).read_text().strip()

    def _write(self, name: str, value: str) -> bool:
        assert self.path is not None
        try:
            (self.path / name).write_text(value)
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:  # v1: the kernel could not reclaim down to the new limit
                raise
            return False

    def usage(self) -> int:
        return int(self._read("memory.current" if self.v2 else "memory.usage_in_bytes"))

    def oom_kills(self) -> int:
        """How many processes the OOM killer killed in this cgroup so far."""
        text = self._read("memory.events" if self.v2 else "memory.oom_control")
        fields = dict(line.split() for line in text.splitlines())
        return int(fields.get("oom_kill", 0))

    def failcnt(self) -> int:
        """How often a charge hit the limit (v1's memory.failcnt; v2's ``max`` events)."""
        if self.v2:
            return int(dict(line.split() for line in self._read("memory.events").splitlines()).get("max", 0))
        return int(self._read("memory.failcnt"))

    def squeeze(self, alive, timeout: float = 30.0) -> None:
        """Lower the limit to the usage, again and again, until ``alive()`` is False or ``timeout`` passes.

        v1 refuses a limit below what it cannot reclaim (EBUSY), so the limit follows the usage down as
        the page cache goes; the process's next page then finds nothing to reclaim: the OOM killer."""
        deadline = time.monotonic() + timeout
        while alive() and time.monotonic() < deadline:
            self._write("memory.max" if self.v2 else "memory.limit_in_bytes", str(self.usage()))
            time.sleep(0.02)

    def lift(self) -> None:
        if self.path is not None:
            self._write("memory.max" if self.v2 else "memory.limit_in_bytes", "max" if self.v2 else "-1")

    def close(self) -> None:
        """Remove the cgroup (its processes ended first: a cgroup with tasks cannot be removed)."""
        if self.path is None:
            return
        for _ in range(50):
            try:
                self.lift()
                self.path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)  # a killed process is still leaving
        self.path = None


_pending: list[int] = []
_holding = 0


def on_exit(signums=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)) -> None:
    """End the harness on these signals through its ``finally`` blocks, with 128 + the signal's number
    (inside :func:`exit_deferred`, once it is left)."""
    def leave(signum, frame):
        if _holding:
            _pending.append(signum)
            return
        raise SystemExit(128 + signum)

    for signum in signums:
        signal.signal(signum, leave)


@contextmanager
def exit_deferred() -> Iterator[None]:
    """A stop signal raises only once this block is left: a launch being started is then one the harness
    knows of (and kills), never an orphan of a half-done Popen. Signal handlers run in the main thread."""
    global _holding
    main = threading.current_thread() is threading.main_thread()
    _holding += main
    try:
        yield
    finally:
        _holding -= main
        if main and not _holding and _pending:
            signum = _pending[0]
            _pending.clear()
            raise SystemExit(128 + signum)


def leftovers() -> set[str]:
    """The loop devices, mounts and memory cgroups of chaos harnesses now present (for the tests' before/after)."""
    found = {line.split(":")[0] + " " + line.split("(")[-1] for line in _sh("losetup", "-a").stdout.splitlines()
             if "edgetrgl-chaos-" in line}
    found |= {line.split(" type ")[0] for line in _sh("mount").stdout.splitlines() if "edgetrgl-chaos-" in line}
    found |= set(_sh("find", "/sys/fs/cgroup", "-maxdepth", "8", "-type", "d", "-name", "edgetrgl-chaos-*").stdout.split())
    return found
