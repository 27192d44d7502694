"""A minimal initrd for Debian's arm64 kernel on QEMU's virt board, built natively on the host.

    python3 initrd.py ROOTFS KERNEL_VERSION OUT.cpio

Debian's own initrd (initramfs-tools, MODULES=most) took over 30 minutes to build under qemu-user
on the shared 2-core host and was still copying modules; the guest needs a handful. This writes a
``newc`` cpio (the kernel unpacks it uncompressed) holding: the modules that reach the virtio root
disk and read ext4 (``virtio_pci``, ``virtio_blk``, ``ext4`` and their dependencies from
``modules.dep``, in load order), ``bash``, ``kmod`` (as insmod) and ``switch_root`` from the root
file system with the shared libraries they need, and ``/init``: load the modules, wait for
``/dev/vda``, mount it and switch to the ``init=`` of the kernel command line. The 9p modules load
later from the root file system (guest_init.sh).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
PROGRAMS = ("bin/bash", "bin/kmod", "sbin/switch_root", "bin/mount", "bin/umount", "bin/sleep", "bin/mkdir", "bin/cat")

INIT = r"""#!/bin/bash
# edgetrgl's minimal initrd (benchmarks/aarch64/system/initrd.py)
export PATH=/bin:/sbin
mkdir -p /proc /sys /dev /root
mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev
while read -r module; do insmod "/lib/modules/$module" || echo "initrd: insmod $module failed"; done < /modules.order
for ((i = 0; i < 120; i++)); do [[ -b /dev/vda ]] && break; sleep 0.5; done
init=/sbin/init
for word in $(cat /proc/cmdline); do [[ $word == init=* ]] && init=${word#init=}; done
if ! mount -t ext4 -o rw /dev/vda /root; then   # nothing to run: power off, do not hang until the host's limit
    echo "initrd: cannot mount /dev/vda"; echo o > /proc/sysrq-trigger; sleep 30
fi
mount --move /dev /root/dev
umount /proc /sys
exec switch_root /root "$init"
"""


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep as {module path: [dependency paths]} (paths relative to the kernel's folder)."""
    deps = {}
    for line in text.splitlines():
        if ":" in line:
            module, _, rest = line.partition(":")
            deps[module.strip()] = rest.split()
    return deps


def module_name(path: str) -> str:
    """The module name of a .ko path (``kernel/fs/ext4/ext4.ko.xz`` -> ``ext4``; dashes as underscores)."""
    base = os.path.basename(path)
    return base.split(".ko")[0].replace("-", "_")


def load_order(deps: dict[str, list[str]], wanted: tuple[str, ...]) -> list[str]:
    """The module paths to insmod, each after what it depends on; a wanted name absent is skipped."""
    by_name = {module_name(p): p for p in deps}
    order: list[str] = []

    def visit(path: str, stack: tuple[str, ...] = ()):
        if path in order or path in stack:
            return
        for dep in deps.get(path, []):
            visit(dep, stack + (path,))
        order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
    return order


def shared_libraries(rootfs: Path, program: str) -> list[str]:
    """The libraries the root file system's dynamic loader resolves for a program (run under qemu-user)."""
    out = subprocess.run(["chroot", str(rootfs), "/lib/ld-linux-aarch64.so.1", "--list", "/" + program],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libs.append(path.lstrip("/"))
    return libs


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data) entries; directories have empty data."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0))
        out += header.encode() + encoded
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build(rootfs: Path, version: str) -> bytes:
    """The initrd's bytes for this root file system and kernel version."""
    kernel_dir = rootfs / "lib" / "modules" / version
    order = load_order(parse_modules_dep((kernel_dir / "modules.dep").read_text()), ROOT_MODULES)
    missing = [m for m in ("virtio_pci", "virtio_blk", "ext4") if m not in {module_name(p) for p in order}]
    if missing:
        raise SystemExit(f"initrd.py: modules.dep of {version} lacks {', '.join(missing)}")
    files: dict[str, tuple[int, bytes]] = {}
    for program in PROGRAMS:
        for path in [program] + shared_libraries(rootfs, program):
            real = rootfs / path
            files[path] = (0o100755, real.read_bytes())
    for module in order:
        files[f"lib/modules/{os.path.basename(module)}"] = (0o100644, (kernel_dir / module).read_bytes())
    files["modules.order"] = (0o100644, "".join(os.path.basename(m) + "\n" for m in order).encode())
    files["init"] = (0o100755, INIT.encode())
    dirs = sorted({str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parents) - 1)})
    entries = [(d, stat.S_IFDIR | 0o755, b"") for d in dirs]
    entries += [(name, mode, data) for name, (mode, data) in sorted(files.items())]
    # kmod answers to the name it is called by
    entries.append(("bin/insmod", stat.S_IFLNK | 0o777, b"kmod"))
    return cpio_newc(entries)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: initrd.py ROOTFS KERNEL_VERSION OUT.cpio", file=sys.stderr)
        return 2
    data = build(Path(argv[0]), argv[1])
    Path(argv[2]).write_bytes(data)
    print(f"initrd.py: {argv[2]}: {len(data) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
