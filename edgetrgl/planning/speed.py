"""The time model's rates per device: what the planner uses to rank plans that fit.

Only the ranking matters (which plan is faster), not the seconds themselves. The CPU rates are fitted
to measured step times on this project's 2-core AMD EPYC (``benchmarks/step_time_model.py``: 48
module steps of ResNet-20 and ResNet-56, with and without micro-batches and checkpointing inside
modules; 92% of pairs of options ranked right in fp32, 97% in bf16). bf16 doubled the matrix rate
there (AVX512-BF16); a CPU without native bf16 gets fp32's rates for it, so bf16 is never modelled
faster there (``--precision auto`` then keeps fp32). A GPU named in ``cuda_rates.json`` (next to this
file) gets the rates fitted on it by ``benchmarks/step_time_model.py --device cuda`` (benchmarks/gpu/run.sh
writes the file's new version with its results); any other GPU gets rates modelled from an H100-class
data sheet, derated: TF32 matrix rate for fp32 (PyTorch's default for convolutions), twice that for
bf16/fp16, HBM bandwidth, and about 10 microseconds of eager dispatch per op.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from edgetrgl.memory.work import MachineSpeed

CPU = MachineSpeed(flops_per_s=298e9, bytes_per_s=5.8e9, seconds_per_op=16e-6,
                   source="fitted on a 2-core AMD EPYC, fp32 (benchmarks/step_time_model.py)")
CPU_BF16 = MachineSpeed(flops_per_s=594e9, bytes_per_s=5.9e9, seconds_per_op=16e-6,
                        source="fitted on a 2-core AMD EPYC with AVX512-BF16, bf16 autocast")
CUDA = MachineSpeed(flops_per_s=60e12, bytes_per_s=2.0e12, seconds_per_op=10e-6,
                    source="modelled: H100-class TF32 rate and HBM bandwidth, derated; ~10 us of dispatch per op")
CUDA_HALF = MachineSpeed(flops_per_s=120e12, bytes_per_s=2.0e12, seconds_per_op=10e-6,
                         source="modelled: H100-class bf16/fp16 tensor-core rate, derated")


RATES_FILE = Path(__file__).with_name("cuda_rates.json")


def machine_speed(device: torch.device | str, precision: str, gpu_name: str | None = None,
                  native_bf16: bool | None = None) -> MachineSpeed:
    """The rates of ``device`` running the step at ``precision`` (fp32, bf16, fp16).

    On CUDA, the rates fitted on this GPU model if ``cuda_rates.json`` has them (``gpu_name``: the
    name to look up, default the device's own, ``torch.cuda.get_device_name``), else the modelled ones.
    ``native_bf16``: the CPU has bf16 in hardware (default: read from ``/proc/cpuinfo``). The planner
    passes both from its :class:`~edgetrgl.devices.machine.MachineFacts`, so it reads nothing itself.
    """
    device = torch.device(device)
    if device.type == "cuda":
        name = gpu_name if gpu_name is not None else _device_name(device)
        fitted = fitted_cuda_rates(RATES_FILE).get(name, {})
        entry = fitted.get("fp32" if precision == "fp32" else "bf16")  # fp16 runs at bf16's rates
        if entry is not None:
            free = float("inf")  # a rate written as null: that term cost nothing measurable on this GPU
            return MachineSpeed(entry["flops_per_s"] or free, entry["bytes_per_s"] or free, entry["seconds_per_op"],
                                source=f"fitted on {name}, {'fp32' if precision == 'fp32' else 'bf16'} "
                                       f"({fitted.get('source', RATES_FILE.name)})")
        return CUDA if precision == "fp32" else CUDA_HALF
    if precision == "fp32":
        return CPU
    return CPU_BF16 if (cpu_has_native_bf16() if native_bf16 is None else native_bf16) else CPU


@functools.cache
def fitted_cuda_rates(path: Path) -> dict[str, dict]:
    """``{gpu name: {"fp32": rates, "bf16": rates, "source": ...}}`` from ``path`` ({} if it is missing)."""
    try:
        return json.loads(Path(path).read_text()).get("gpus", {})
    except (OSError, ValueError):
        return {}


def _device_name(device: torch.device) -> str | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def cpu_has_native_bf16() -> bool:
    """bf16 arithmetic in hardware: x86's AVX512-BF16 or AMX, or Arm's BF16 extension (ARMv8.6; not
    on a Pi 4's Cortex-A72 or a Pi 5's Cortex-A76)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
