"""Atomic checkpoints: a run interrupted at any instant resumes from the last complete one.

Writing: temporary file, flush and fsync, rename over ``checkpoint.pt``, fsync of the folder
(``edgetrgl._durable.write_atomically``).
Rename is atomic, so ``checkpoint.pt`` is always either the previous complete checkpoint or the new
complete one, never a torn file. A disk that fills up mid-write leaves the previous one in place.

The file ends with a seal: a marker and the BLAKE2b digest of everything before it. A byte altered
later (a failing SD card, a file copied in half) is refused as corrupt: torch's own format misses
most single-bit flips (benchmarks/chaos.py found 87% of them loading silently, into a resumed run
that then differed). ``torch.load`` still reads a sealed file (zip readers ignore trailing bytes).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from edgetrgl._durable import write_atomically
from edgetrgl._faults import crash_point
from edgetrgl.errors import UserError

CHECKPOINT = "checkpoint.pt"
FORMAT = "edgetrgl-checkpoint/2"  # /2: sealed with a digest; /1 files (unsealed) are still read
_LEGACY_FORMAT = "edgetrgl-checkpoint/1"
_SEAL = b"edgetrgl-blake2b"  # 16 bytes, then the 16-byte digest of the file's bytes before the marker
_SEAL_BYTES = len(_SEAL) + 16


def _seal(data) -> bytes:
    return _SEAL + hashlib.blake2b(data, digest_size=16).digest()


class DiskFull(UserError):
    """No space left while writing a checkpoint; the previous one is intact."""


def save_checkpoint(run_dir: Path, state: dict[str, Any], name: str = CHECKPOINT) -> Path:
    """Write ``state`` to ``run_dir/checkpoint.pt`` (or ``name``) atomically.

    Raises:
        DiskFull: the disk filled up; the previous checkpoint is kept and the partial file removed.
    """
    final = run_dir / name
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    buffer.write(_seal(buffer.getbuffer()))
    data = buffer.getbuffer()

    def write_halves(fh) -> None:  # a fault point between the halves: a kill there leaves a torn .tmp
        half = len(data) // 2
        fh.write(data[:half])
        fh.flush()
        crash_point("checkpoint_write")
        fh.write(data[half:])
        fh.flush()
        os.fsync(fh.fileno())
        crash_point("checkpoint_rename")

    try:
        write_atomically(final, write_halves)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(f"disk full while writing a checkpoint in {run_dir}: the previous checkpoint is intact; "
                           f"free some space and resume with: edgetrgl train --resume {run_dir}") from None
        raise
    return final


def load_checkpoint(run_dir: Path, name: str = CHECKPOINT) -> dict[str, Any]:
    """Read the last complete checkpoint of a run folder (``name``: a distributed run's part).

    Raises:
        UserError: there is none, or it is corrupt (its seal does not match) or of another format.
    """
    path = Path(run_dir) / name
    if not path.exists():
        raise UserError(f"no checkpoint in {run_dir}: nothing to resume (was it started by edgetrgl train?)")
    corrupt = (f"checkpoint {path} is corrupt ({{}}); it cannot be resumed: move it away to start the run again, "
               f"or restore a copy")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(corrupt.format(exc.strerror)) from None
    sealed = raw[-_SEAL_BYTES:-16] == _SEAL
    if sealed and _seal(memoryview(raw)[:-_SEAL_BYTES]) != raw[-_SEAL_BYTES:]:
        raise UserError(corrupt.format("its checksum does not match")) from None
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torn or foreign file: any unpickling error means "not usable"
        raise UserError(corrupt.format(type(exc).__name__)) from None
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, _LEGACY_FORMAT):
        raise UserError(f"{path} is not an edgetrgl checkpoint")
    if state["format"] == FORMAT and not sealed:  # a sealed file whose seal was cut off or altered
        raise UserError(corrupt.format("its checksum is missing"))
    return state
