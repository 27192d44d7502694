"""One writer per run folder: an operating-system lock that dies with the process holding it.

``train`` and ``resume`` hold ``flock(LOCK_EX)`` on ``<run>/.lock`` for as long as they may write
into the folder. The kernel drops the lock when the process ends, however it ends (SIGKILL, power
cut), so there is never a stale lock to delete by hand. The file itself stays (deleting a lock file
races with a process that has just opened it) and tells a refused process who holds the folder.

Readers (``load_run``, ``load_checkpoint``) take no lock: every file a reader opens is written
atomically (temporary file, fsync, rename), so they always see a complete one.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil

from edgetrgl._durable import make_dirs
from edgetrgl.errors import UserError

LOCK_FILE = ".lock"

# Locks this process holds: realpath -> [fd, thread id, depth]. A thread that already holds a folder
# may enter again (auto-resume holds it, then calls train or resume); any other thread is refused.
_held: dict[str, list[int]] = {}


class RunDirLocked(UserError):
    """Another process (or thread) is writing into the run folder."""


@contextmanager
def hold_run_dir(run_dir: str | Path | None, create: bool = True) -> Iterator[Path | None]:
    """Hold the run folder's write lock for the ``with`` block; a no-op for ``None`` or ``""``.

    Args:
        run_dir: the run folder.
        create: make the folder (and its parents) if it does not exist yet.

    Raises:
        RunDirLocked: another process holds it; the message names that process, and nothing in
            the folder was changed.
        UserError: the folder is not a folder or cannot be written.
    """
    if not run_dir:
        yield None
        return
    path = Path(run_dir)
    key = os.path.realpath(path)
    mine = _held.get(key)
    if mine is not None and mine[1] == threading.get_ident():
        mine[2] += 1
        try:
            yield path
        finally:
            mine[2] -= 1
        return
    existed = path.exists()
    fd = _open_lock_file(path, create)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirLocked(f"{path} is in use by {describe_holder(fd)}: one writer per run folder; wait for it to "
                               f"end or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me()).encode(), 0)
        _held[key] = [fd, threading.get_ident(), 1]
        try:
            yield path
        except BaseException:
            if not existed:  # a run that failed before writing anything leaves no folder behind
                _remove_if_only_lock(path)
            raise
        finally:
            del _held[key]
            os.ftruncate(fd, 0)  # released cleanly: no holder to report
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _remove_if_only_lock(path: Path) -> None:
    try:
        if [p.name for p in path.iterdir()] == [LOCK_FILE]:
            (path / LOCK_FILE).unlink()
            path.rmdir()
    except OSError:
        pass  # best effort: an empty folder left behind harms nothing


def _open_lock_file(path: Path, create: bool) -> int:
    name = f"--out {path}" if create else str(path)  # create: a new run, whose folder the user named with --out
    if path.exists() and not path.is_dir():
        raise UserError(f"{name} exists and is not a folder")
    try:
        if create:
            make_dirs(path)  # durable: a power cut cannot take the folder (and the run in it) away
        return os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write to {name}: {exc.strerror}") from None


def _me() -> dict:
    try:
        command = " ".join(psutil.Process().cmdline())
    except psutil.Error:
        command = ""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "since": datetime.datetime.now().isoformat(timespec="seconds")}


def describe_holder(fd: int) -> str:
    """Who holds the lock, in words, from what the holder wrote into the lock file."""
    info = {}
    for _ in range(20):  # the holder writes its details just after taking the lock: give it a moment
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            info = {}
        if info.get("pid"):
            break
        time.sleep(0.05)
    if not info.get("pid"):
        return "another process"
    pid, command = info["pid"], info.get("command", "")
    if info.get("host") == socket.gethostname():
        try:
            command = " ".join(psutil.Process(pid).cmdline()) or command
        except psutil.Error:
            pass
    host = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
    command = " ".join(command.split())  # one line, whatever the arguments held
    if len(command) > 200:
        command = command[:197] + "..."
    since = f", since {info['since']}" if info.get("since") else ""
    return f"process {pid}{host} ({command or 'command unknown'}{since})"
