"""What the emulated CPU offers: HWCAP bits, /proc/cpuinfo, and whether an LSE atomic executes.

Runs inside the arm64 chroot under qemu-user (system python3, no torch needed) and prints one JSON
object. The LSE test matters because the reported Raspberry Pi 4 crashes of torch aarch64 wheels were
ARMv8.1 LSE atomics (``ldaddal``) that the Cortex-A72 (ARMv8.0) lacks: if the emulator lets the
instruction run under ``QEMU_CPU=cortex-a72``, it cannot reproduce those crashes.
"""

import ctypes
import json
import mmap
import platform
import subprocess
import sys

AT_HWCAP, AT_HWCAP2 = 16, 26
# linux/arch/arm64/include/uapi/asm/hwcap.h, bit order
HWCAP = ["fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp",
         "asimdhp", "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4",
         "asimddp", "sha512", "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb",
         "paca", "pacg"]
HWCAP2 = ["dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4", "flagm2",
          "frint", "svei8mm", "svef32mm", "svef64mm", "svebf16", "i8mm", "bf16", "dgh", "rng", "bti",
          "mte", "ecv", "afp", "rpres", "mte3", "sme", "sme_i16i64", "sme_f64f64", "sme_i8i32",
          "sme_f16f32", "sme_b16f32", "sme_f32f32", "sme_fa64", "wfxt"]

# int f(int *p) { return atomic_fetch_add(p, 1); } written with the LSE instruction itself:
#   mov w1, #1 ; ldaddal w1, w0, [x0] ; ret
LSE_CODE = bytes.fromhex("21008052" "0000e1b8" "c0035fd6")


def _bits(value: int, names: list[str]) -> list[str]:
    return [name for i, name in enumerate(names) if value >> i & 1]


def run_lse() -> None:
    """Execute one ldaddal; exits normally only if the CPU implements LSE."""
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(LSE_CODE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    func = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int))(addr)
    cell = ctypes.c_int(41)
    old = func(ctypes.byref(cell))
    print(f"ldaddal ok: old={old} new={cell.value}")


def main() -> None:
    if sys.argv[1:] == ["lse"]:
        run_lse()
        return
    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    hwcap, hwcap2 = libc.getauxval(AT_HWCAP), libc.getauxval(AT_HWCAP2)
    try:
        with open("/proc/cpuinfo") as fh:
            cpuinfo = [line.strip() for line in fh if line.strip()][:12]
    except OSError as exc:
        cpuinfo = [f"unreadable: {exc}"]
    # SIGILL kills the child, so the instruction runs in its own process
    child = subprocess.run([sys.executable, __file__, "lse"], capture_output=True, text=True)
    print(json.dumps({
        "machine": platform.machine(),
        "hwcap": hex(hwcap), "hwcap2": hex(hwcap2),
        "features": _bits(hwcap, HWCAP) + _bits(hwcap2, HWCAP2),
        "lse_atomics_in_hwcap": bool(hwcap >> HWCAP.index("atomics") & 1),
        "ldaddal_returncode": child.returncode,
        "ldaddal_output": (child.stdout + child.stderr).strip()[-300:],
        "proc_cpuinfo_head": cpuinfo,
    }))


if __name__ == "__main__":
    main()
