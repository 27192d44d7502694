"""The time model's rates per device: what the planner uses to rank plans that fit.

Only the ranking matters (which plan is faster), not the seconds themselves. The CPU rates are fitted
to measured step times on this project's 2-core AMD EPYC (``benchmarks/step_time_model.py``: 72
module steps of ResNet-20 and ResNet-56 with and without micro-batches and checkpointing inside
modules, median error 9%); bf16 autocast measured no faster there (median 1.09x fp32's time), so it
gets fp32's rates. The CUDA rates are modelled from an H100-class data sheet, derated: TF32 matrix
rate for fp32 (PyTorch's default for convolutions), twice that for bf16/fp16, HBM bandwidth, and
about 10 microseconds of eager dispatch per op.
"""

from __future__ import annotations

import torch

from edgetrgl.memory.work import MachineSpeed

CPU = MachineSpeed(flops_per_s=218e9, bytes_per_s=6.7e9, seconds_per_op=16e-6,
                   source="fitted on a 2-core AMD EPYC, fp32 and bf16 alike (benchmarks/step_time_model.py)")
CUDA = MachineSpeed(flops_per_s=60e12, bytes_per_s=2.0e12, seconds_per_op=10e-6,
                    source="modelled: H100-class TF32 rate and HBM bandwidth, derated; ~10 us of dispatch per op")
CUDA_HALF = MachineSpeed(flops_per_s=120e12, bytes_per_s=2.0e12, seconds_per_op=10e-6,
                         source="modelled: H100-class bf16/fp16 tensor-core rate, derated")


def machine_speed(device: torch.device | str, precision: str) -> MachineSpeed:
    """The rates of ``device`` running the step at ``precision`` (fp32, bf16, fp16)."""
    if torch.device(device).type == "cuda":
        return CUDA if precision == "fp32" else CUDA_HALF
    return CPU
