"""An strace log of a run, turned into file-system operations under one folder (for crash_states.py).

The trace is taken with ``strace -f -y -xx -s <big>``: every string and every fd's path is printed
as ``\\xHH`` escapes, so the data of each write is in the log and no quote or comma inside a path
can confuse the parser. Calls that failed are dropped, and so is anything outside ``root``.

Each :class:`Op` names its file by inode (a number given at creation), so a rename moves the name
and later writes through an open fd still reach the same file, as on a real file system.

Memory-mapped writes (the activation cache's shards) are invisible to strace: the recording run
marks them with a ``write(-1, "edgetrgl-mmap:<path>")`` (it fails with EBADF, so it changes nothing)
and the parser turns the marker into a write of the shard's whole content, read from ``mmap_dir``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

MMAP_MARK = b"edgetrgl-mmap:"
TRACED = ("openat,open,creat,write,pwrite64,writev,pwritev,rename,renameat,renameat2,fsync,fdatasync,"
          "ftruncate,truncate,unlink,unlinkat,mkdir,mkdirat,rmdir,close,fallocate")
DATA_KINDS = ("write", "truncate")  # change an inode's bytes
DIR_KINDS = ("create", "mkdir", "rename", "unlink", "rmdir")  # change a folder's entries

_LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)(<[^>]*>)?")
_STR = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
_FD = re.compile(r"(-?\d+|AT_FDCWD)<((?:\\x[0-9a-f]{2})*)>")
_IOV = re.compile(r'iov_base="((?:\\x[0-9a-f]{2})*)"')


@dataclass
class Op:
    """One operation, in the order the process made it.

    kind: ``create`` (a new empty file), ``mkdir``, ``rename``, ``unlink``, ``rmdir`` (folder
    entries); ``write`` (``data`` at ``offset``), ``truncate`` (to ``size``: also fallocate's growth)
    (file bytes); ``fsync`` (of a file, or of a folder when ``is_dir``).
    """

    index: int
    kind: str
    path: str  # relative to the root ("" is the root itself); for a rename, the source
    ino: int = -1
    dst: str = ""
    data: bytes = b""
    offset: int = 0
    size: int = 0
    is_dir: bool = False

    @property
    def folder(self) -> str:
        """The folder whose entry this is: ``..`` (the root's parent) for the root itself."""
        return ".." if self.path == "" else os.path.dirname(self.path)

    def describe(self) -> str:
        extra = {"write": f" {len(self.data)} B at {self.offset}", "truncate": f" to {self.size}",
                 "rename": f" -> {self.dst}"}.get(self.kind, "")
        return f"{self.kind} {self.path or '.'}{extra}"


@dataclass
class _Fd:
    path: str
    ino: int
    pos: int = 0
    append: bool = False


@dataclass
class _Model:
    """The file system as the trace builds it: names to inodes, inodes to bytes."""

    names: dict[str, int] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {".."})
    sizes: dict[int, int] = field(default_factory=dict)
    next_ino: int = 1


def _unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


def parse_trace(lines, root: str | Path, mmap_dir: Path | None = None) -> list[Op]:
    """The operations under ``root`` in a ``strace -f -y -xx`` log (``lines``: an iterable of lines)."""
    root = str(Path(root)).rstrip("/")
    ops: list[Op] = []
    model = _Model()
    fds: dict[int, _Fd] = {}
    pending: dict[str, str] = {}  # pid -> the first half of an "<unfinished ...>" call

    def rel(path: str) -> str | None:
        path = os.path.normpath(path)
        if path == root:
            return ""
        if path == os.path.dirname(root):  # only its fsync matters: it makes the root's own entry durable
            return ".."
        return path[len(root) + 1:] if path.startswith(root + "/") else None

    def emit(kind: str, path: str, **kw) -> Op:
        op = Op(len(ops), kind, path, **kw)
        ops.append(op)
        return op

    for raw in lines:
        pid, _, rest = raw.rstrip("\n").partition(" ")
        rest = rest.lstrip()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        if rest.startswith("<... "):
            head = pending.pop(pid, None)
            if head is None:
                continue
            rest = head + rest.split("resumed>", 1)[1]
        m = _LINE.match(f"{pid} {rest}")
        if not m:
            continue
        call, args, ret, ret_path = m.group(2), m.group(3), int(m.group(4)), m.group(5)
        strings = [_unhex(s).decode("utf-8", "surrogateescape") for s in _STR.findall(args)]
        fd_args = [(a, _unhex(p).decode("utf-8", "surrogateescape")) for a, p in _FD.findall(args)]
        if call == "write" and args.startswith("-1,"):  # the recording run's marker for a mapped file's bytes
            payload = _unhex(_STR.findall(args)[0]) if _STR.findall(args) else b""
            if payload.startswith(MMAP_MARK) and mmap_dir is not None:
                path = rel(payload[len(MMAP_MARK):].decode())
                if path is not None and path in model.names:
                    data = (mmap_dir / path).read_bytes()
                    emit("write", path, ino=model.names[path], data=data, offset=0)
            continue
        if ret < 0:
            continue

        def resolve(name: str, dirfd_path: str | None) -> str | None:
            full = name if name.startswith("/") or dirfd_path is None else os.path.join(dirfd_path, name)
            return rel(full)

        if call in ("open", "openat", "creat"):
            dirfd = fd_args[0][1] if call == "openat" and fd_args else None
            path = resolve(strings[0], dirfd)
            if path is None or not ret_path:
                continue
            flags = args
            exists = path in model.names or path in model.dirs
            if path in model.dirs or "O_DIRECTORY" in flags:
                fds[ret] = _Fd(path, -1)
                continue
            if not exists and ("O_CREAT" in flags or call == "creat"):
                ino = model.next_ino
                model.next_ino += 1
                model.names[path], model.sizes[ino] = ino, 0
                emit("create", path, ino=ino)
            if path not in model.names:
                continue
            ino = model.names[path]
            if exists and ("O_TRUNC" in flags or call == "creat") and model.sizes[ino]:
                model.sizes[ino] = 0
                emit("truncate", path, ino=ino, size=0)
            fds[ret] = _Fd(path, ino, append="O_APPEND" in flags)
        elif call == "close":
            fds.pop(int(args.split("<")[0].split(",")[0]), None)
        elif call in ("write", "pwrite64", "writev", "pwritev"):
            fd = fds.get(int(args.split("<")[0].split(",")[0]))
            if fd is None or fd.ino < 0:
                continue
            data = b"".join(_unhex(s) for s in _IOV.findall(args)) if call.endswith("v") else \
                _unhex(_STR.findall(args)[0])
            data = data[:ret]
            if call.startswith("pwrite"):
                offset = int(args.rsplit(",", 1)[1])
            else:
                offset = model.sizes[fd.ino] if fd.append else fd.pos
                fd.pos = offset + len(data)
            model.sizes[fd.ino] = max(model.sizes[fd.ino], offset + len(data))
            emit("write", fd.path, ino=fd.ino, data=data, offset=offset)
        elif call in ("ftruncate", "fallocate"):
            fd = fds.get(int(args.split("<")[0].split(",")[0]))
            if fd is None or fd.ino < 0:
                continue
            numbers = [int(x) for x in re.findall(r",\s*(\d+)", args)]
            if call == "ftruncate":
                size = numbers[0]
            else:  # fallocate(fd, mode, offset, len): mode 0 grows the file with zeros
                if numbers[0] != 0:
                    continue
                size = max(model.sizes[fd.ino], numbers[1] + numbers[2])
            model.sizes[fd.ino] = size
            emit("truncate", fd.path, ino=fd.ino, size=size)
        elif call in ("fsync", "fdatasync"):
            fd = fds.get(int(args.split("<")[0].split(",")[0]))
            if fd is not None:
                emit("fsync", fd.path, ino=fd.ino, is_dir=fd.ino < 0)
        elif call in ("rename", "renameat", "renameat2"):
            if call == "rename":
                src, dst = rel(strings[0]), rel(strings[1])
            else:
                src = resolve(strings[0], fd_args[0][1] if fd_args else None)
                dst = resolve(strings[1], fd_args[1][1] if len(fd_args) > 1 else None)
            if src is None or dst is None or src not in model.names:
                continue
            ino = model.names.pop(src)
            model.names[dst] = ino
            emit("rename", src, ino=ino, dst=dst)
        elif call in ("unlink", "unlinkat", "rmdir"):
            dirfd = fd_args[0][1] if call == "unlinkat" and fd_args else None
            path = resolve(strings[0], dirfd)
            if path is None:
                continue
            if call == "rmdir" or "AT_REMOVEDIR" in args:
                model.dirs.discard(path)
                emit("rmdir", path, is_dir=True)
            elif path in model.names:
                emit("unlink", path, ino=model.names.pop(path))
        elif call in ("mkdir", "mkdirat"):
            dirfd = fd_args[0][1] if call == "mkdirat" and fd_args else None
            path = resolve(strings[0], dirfd)
            if path is not None and path not in model.dirs:
                model.dirs.add(path)
                emit("mkdir", path, is_dir=True)
    return ops


# ---- crash states ------------------------------------------------------------------------------
@dataclass
class State:
    """What a crash leaves: folders and files (relative paths), and how it came about."""

    crash_at: int  # operations before the crash
    family: str
    focus: str  # the file the state is about (the one whose operation is torn, lost or last)
    dirs: frozenset[str]
    files: dict[str, bytes]
    lost: tuple[str, ...] = ()  # files the run had made durable (see committed) that the state lacks

    def key(self) -> tuple:
        return (self.dirs, tuple(sorted((p, id(b)) for p, b in self.files.items())), self.lost)


def apply(ops: list[Op], keep, torn: int | None = None) -> tuple[frozenset[str], dict[str, bytes]]:
    """Replay the operations ``keep(op)`` accepts; ``torn``: the index of a write kept only in half.

    A name whose folder did not survive is unreachable, so it is not in the result.
    """
    names: dict[str, int] = {}
    dirs: set[str] = set()
    data: dict[int, bytearray] = {}
    for op in ops:
        if not keep(op):
            continue
        if op.kind == "mkdir":
            dirs.add(op.path)
        elif op.kind == "rmdir":
            dirs.discard(op.path)
        elif op.kind == "create":
            names[op.path] = op.ino
            data.setdefault(op.ino, bytearray())
        elif op.kind == "rename":
            if names.get(op.path) == op.ino:
                del names[op.path]
            names[op.dst] = op.ino
        elif op.kind == "unlink":
            if names.get(op.path) == op.ino:
                del names[op.path]
        elif op.kind in DATA_KINDS:
            buf = data.setdefault(op.ino, bytearray())
            if op.kind == "truncate":
                del buf[op.size:]
                buf.extend(bytes(op.size - len(buf)))
            else:
                chunk = op.data[: len(op.data) // 2] if op.index == torn else op.data
                if len(buf) < op.offset:
                    buf.extend(bytes(op.offset - len(buf)))
                buf[op.offset:op.offset + len(chunk)] = chunk

    def reachable(path: str) -> bool:
        parent = os.path.dirname(path)
        return parent == "" or (parent in dirs and reachable(parent))

    if "" not in dirs:  # the run folder itself never reached the disk
        return frozenset(), {}
    live_dirs = frozenset(d for d in dirs if d == "" or reachable(d))
    return live_dirs, {p: bytes(data.get(i, b"")) for p, i in names.items() if reachable(p)}


def volatile(ops: list[Op], crash_at: int) -> list[Op]:
    """The operations before ``crash_at`` that no later fsync (before the crash) made durable:
    a file's bytes need an fsync of the file, a folder's entries an fsync of the folder."""
    synced_files: dict[int, int] = {}
    synced_dirs: dict[str, int] = {}
    for op in ops[:crash_at]:
        if op.kind == "fsync":
            if op.is_dir:
                synced_dirs[op.path] = op.index
            else:
                synced_files[op.ino] = op.index
    out = []
    for op in ops[:crash_at]:
        if op.kind in DATA_KINDS and synced_files.get(op.ino, -1) < op.index:
            out.append(op)
        elif op.kind in DIR_KINDS:
            folders = {op.folder} | ({os.path.dirname(op.dst)} if op.kind == "rename" else set())
            if any(synced_dirs.get(f, -1) < op.index for f in folders):
                out.append(op)
    return out


def crash_states(ops: list[Op]) -> list[State]:
    """Every distinct state the ordering rules allow at each crash point (duplicates merged):

    * ``prefix``: every operation before the crash reached the disk;
    * ``torn write``: the last one, a write, reached it in half;
    * ``data not synced``: one file's writes since its last fsync are lost (``rename without
      data`` when that file was renamed meanwhile: the new name with the old or no bytes);
    * ``entry lost``: the last unsynced create/rename/unlink/mkdir in a folder is lost (its folder
      was never fsync'd after it), or all of that folder's are;
    * ``all unsynced lost``: only what some fsync made durable survives.
    """
    seen: dict[tuple, State] = {}
    blobs: dict[bytes, bytes] = {}  # one copy of equal contents (a cache shard is megabytes)

    durable: dict[str, bytes] = {}

    def add(crash_at: int, family: str, focus: str, keep, torn: int | None = None) -> None:
        dirs, files = apply(ops[:crash_at], keep, torn)
        files = {p: blobs.setdefault(hashlib.blake2b(b, digest_size=16).digest(), b) for p, b in files.items()}
        lost = tuple(sorted(p for p, b in durable.items() if files.get(p) != b))
        state = State(crash_at, family, focus, dirs, files, lost)
        seen.setdefault(state.key(), state)

    for crash_at in range(len(ops) + 1):
        durable = committed(ops, crash_at)  # equal files after different histories are different states
        last = ops[crash_at - 1] if crash_at else None
        add(crash_at, "prefix", (last.dst or last.path) if last else "", lambda op: True)
        if last is not None and last.kind == "write" and len(last.data) > 1:
            add(crash_at, "torn write", last.path, lambda op: True, torn=last.index)
        lost = volatile(ops, crash_at)
        if not lost:
            continue
        lost_ids = {op.index for op in lost}
        by_ino: dict[int, list[Op]] = {}
        for op in lost:
            if op.kind in DATA_KINDS:
                by_ino.setdefault(op.ino, []).append(op)
        for ino, dropped in by_ino.items():
            ids = {op.index for op in dropped}
            renamed = [op for op in ops[:crash_at] if op.kind == "rename" and op.ino == ino and op.index > min(ids)]
            family = "rename without data" if renamed else "data not synced"
            focus = renamed[-1].dst if renamed else dropped[-1].path
            add(crash_at, family, focus, lambda op, ids=ids: op.index not in ids)
        by_dir: dict[str, list[Op]] = {}
        for op in lost:
            if op.kind in DIR_KINDS:
                by_dir.setdefault(op.folder, []).append(op)
        for dropped in by_dir.values():
            one = dropped[-1]
            add(crash_at, f"{one.kind} lost", one.dst or one.path, lambda op, i=one.index: op.index != i)
            if len(dropped) > 1:
                ids = {op.index for op in dropped}
                add(crash_at, f"{one.kind} lost", one.dst or one.path, lambda op, ids=ids: op.index not in ids)
        add(crash_at, "all unsynced lost", last.dst or last.path, lambda op: op.index not in lost_ids)
    return list(seen.values())


def committed(ops: list[Op], crash_at: int) -> dict[str, bytes]:
    """The files the run had made durable by its own lights before ``crash_at``: bytes fsync'd after
    the last write, and the folder fsync'd after the file's last create or rename. A crash state
    that lacks one of them lost it (an ancestor folder whose entry was never made durable)."""
    lost = volatile(ops, crash_at)
    unsafe = {op.ino for op in lost if op.ino >= 0}
    _, files = apply(ops[:crash_at], lambda op: True)
    names: dict[str, int] = {}
    for op in ops[:crash_at]:
        if op.kind == "create":
            names[op.path] = op.ino
        elif op.kind == "rename":
            names.pop(op.path, None)
            names[op.dst] = op.ino
        elif op.kind == "unlink":
            names.pop(op.path, None)
    return {p: files[p] for p, ino in names.items() if ino not in unsafe and p in files}


def materialise(state: State, root: Path) -> None:
    """Write ``state`` into the empty or absent folder ``root``."""
    if not state.dirs:
        return
    for d in sorted(state.dirs, key=len):
        (root / d).mkdir(parents=True, exist_ok=True)
    for path, data in state.files.items():
        (root / path).write_bytes(data)
