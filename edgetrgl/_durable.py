"""Writes that survive a power cut, not only a killed process.

After SIGKILL the kernel still holds every accepted write; after a power cut only what an fsync
flushed is there, and a file's name is a separate entry in its folder: a rename or a new file or
folder is durable only once that folder is fsync'd too. The crash-state explorer (docs/reliability.md) built the
states a crash may leave and checks a resume from each.

    write_atomically(path, data)      temporary file, fsync, rename over path, fsync of the folder
    make_dirs(path)                   mkdir -p, each new folder's parent fsync'd
    fsync_dir(path), fsync_file(path)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable, Union

Content = Union[bytes, bytearray, memoryview, Callable[[BinaryIO], None]]


def fsync_dir(path: str | Path) -> None:
    """Make the entries of folder ``path`` (creates, renames, unlinks in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a file written by others (a memory map) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str | Path, content: Content) -> Path:
    """Replace ``path`` with ``content`` so that a crash at any instant leaves the old file or the new
    one, whole: written to ``<path>.tmp``, fsync'd, renamed over ``path``, the folder fsync'd.

    Args:
        content: the bytes, or a function that writes them to the open (binary) file.

    Raises:
        OSError: as the writes raise it (ENOSPC...); ``path`` is untouched and the temporary file gone.
        Whatever ``content`` raises, likewise.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # the rename itself survives a power cut
    return path


def make_dirs(path: str | Path) -> Path:
    """``mkdir -p path``, with each folder it creates made durable (its parent fsync'd).

    Raises:
        OSError: a component exists and is not a folder, or cannot be created.
    """
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # another process made it meanwhile
        fsync_dir(folder.parent)
    return path
