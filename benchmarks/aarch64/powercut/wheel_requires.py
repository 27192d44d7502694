"""The requirements of wheels as pip on the board would read them (Linux, aarch64, CPython 3.11).

    python3 wheel_requires.py [--skip NAME ...] WHEEL...

pip on x86_64 with ``--platform ..._aarch64`` still evaluates environment markers for the host, so
torch's ``platform_machine == "x86_64"`` CUDA dependencies (torch 2.4 to 2.10) are wanted and
torch 2.11+'s real aarch64 ones are judged by the host. This reads each wheel's ``METADATA`` and
prints, one per line, the ``Requires-Dist`` entries whose markers hold on the board, without their
markers, so the host can fetch exactly those (``pip download`` them, the wheels with ``--no-deps``).
"""

from __future__ import annotations

import argparse
import sys
import zipfile

from packaging.markers import Marker
from packaging.requirements import Requirement

# the board: Raspberry Pi OS / Debian 12 bookworm arm64
BOARD_ENV = {
    "implementation_name": "cpython", "implementation_version": "3.11.2", "os_name": "posix",
    "platform_machine": "aarch64", "platform_python_implementation": "CPython",
    "platform_release": "", "platform_system": "Linux", "platform_version": "",
    "python_full_version": "3.11.2", "python_version": "3.11", "sys_platform": "linux",
}


def metadata_requires(text: str) -> list[str]:
    """The ``Requires-Dist`` values of a wheel's METADATA text."""
    found = []
    for line in text.splitlines():
        if not line.strip():  # the headers end at the first blank line; the description follows
            break
        if line.startswith("Requires-Dist:"):
            found.append(line.partition(":")[2].strip())
    return found


def board_requirements(requires: list[str], skip: set[str] = frozenset(), extras: tuple[str, ...] = ("",)) -> list[str]:
    """The requirements (name, extras and specifier; no marker) whose markers hold on the board."""
    kept = []
    for text in requires:
        req = Requirement(text)
        if req.name.lower() in skip:
            continue
        if req.marker is not None and not any(
                Marker(str(req.marker)).evaluate({**BOARD_ENV, "extra": extra}) for extra in extras):
            continue
        extras_part = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        kept.append(f"{req.name}{extras_part}{req.specifier}")
    return kept


def wheel_metadata(path: str) -> str:
    """The METADATA text inside a wheel file."""
    with zipfile.ZipFile(path) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return wheel.read(name).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", action="append", default=[], help="a requirement name to leave out")
    parser.add_argument("wheels", nargs="+")
    args = parser.parse_args(argv)
    skip = {s.lower() for s in args.skip}
    seen = []
    for path in args.wheels:
        for req in board_requirements(metadata_requires(wheel_metadata(path)), skip):
            if req not in seen:
                seen.append(req)
    print("\n".join(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
