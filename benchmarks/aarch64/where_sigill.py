"""Where an emulated program died of SIGILL: library, offset, symbol and the instruction word.

Reads the output of a run under ``QEMU_STRACE=1`` (qemu-user's syscall trace): the ``SIGILL``
line gives the faulting address, the ``openat``/``mmap`` lines give which file was mapped where.
The symbol comes from the host's ``readelf -sW`` (it reads aarch64 ELF files too). Prints one JSON
object; host side, standard library only.

    python3 where_sigill.py STRACE_LOG ROOTFS
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

OPEN = re.compile(r'^(\d+) openat\(AT_FDCWD,"([^"]+)",[^)]*\) = (\d+)$')
MMAP = re.compile(r"^(\d+) mmap\((0x[0-9a-f]+),(\d+),([A-Z_|]+),([A-Z_|]+),(-?\d+),(\d+)\) = (0x[0-9a-f]+)$")
SIGILL = re.compile(r"SIGILL \{.*si_addr=(0x[0-9a-f]+)")


def _decode(word: int) -> str:
    """Name the instruction classes the Pi 4 reports were about (ARMv8.1 LSE atomics)."""
    if word & 0x3F200C00 == 0x38200000:
        return "atomic memory operation (LSE LDADD/LDCLR/LDEOR/LDSET/SWP family, ARMv8.1)"
    if word & 0x3FA07C00 == 0x08A07C00:
        return "LSE CAS, ARMv8.1"
    return "not an LSE atomic (decode it with an aarch64 disassembler)"


def _symbol(path: Path, vaddr: int) -> str | None:
    """The function symbol covering vaddr, from readelf's symbol tables."""
    try:
        out = subprocess.run(["readelf", "-sW", str(path)], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    best = None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[3] != "FUNC":
            continue
        start, size = int(fields[1], 16), int(fields[2], 0)
        if start <= vaddr < start + max(size, 1):
            best = f"{fields[7]}+{vaddr - start:#x}"
    return best


def _load_segments(path: Path) -> list[tuple[int, int, int]]:
    """(file offset, vaddr, file size) of each PT_LOAD segment of a 64-bit little-endian ELF."""
    data = path.read_bytes()[:1 << 16]
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segments = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            segments.append((p_offset, p_vaddr, p_filesz))
    return segments


def locate(log: str, rootfs: Path) -> dict:
    fd_path: dict[tuple[str, int], str] = {}
    maps: list[tuple[int, int, str, int]] = []  # start, length, path, file offset
    fault = None
    for line in log.splitlines():
        if m := OPEN.match(line):
            fd_path[(m[1], int(m[3]))] = m[2]
        elif m := MMAP.match(line):
            fd = int(m[6])
            if fd >= 0 and (m[1], fd) in fd_path:
                maps.append((int(m[8], 16), int(m[3]), fd_path[(m[1], fd)], int(m[7])))
        elif m := SIGILL.search(line):
            fault = int(m[1], 16)
    if fault is None:
        return {"sigill": False}
    result: dict = {"sigill": True, "address": hex(fault)}
    hit = next(((s, n, p, off) for s, n, p, off in reversed(maps) if s <= fault < s + n), None)
    if hit is None:
        return result
    start, _length, path, map_offset = hit
    file_offset = fault - start + map_offset
    host_path = rootfs / path.lstrip("/")
    result.update(library=path, file_offset=hex(file_offset))
    word, = struct.unpack("<I", host_path.read_bytes()[file_offset:file_offset + 4])
    result.update(instruction_word=f"{word:#010x}", instruction=_decode(word))
    vaddr = next((file_offset - off + va for off, va, size in _load_segments(host_path)
                  if off <= file_offset < off + size), None)
    if vaddr is not None:
        result["symbol"] = _symbol(host_path, vaddr)
    return result


def main() -> None:
    log, rootfs = Path(sys.argv[1]).read_text(errors="replace"), Path(sys.argv[2])
    print(json.dumps(locate(log, rootfs)))


if __name__ == "__main__":
    main()
