"""Mixed precision for the module step (``--precision fp32|bf16|fp16``).

The step's forward runs under ``torch.autocast`` (CUDA or CPU); the transport term is squared in
fp32 either way (:mod:`edgetrgl.transport`). fp16 gradients underflow without loss scaling, so an
fp16 step scales its loss with a ``torch.amp.GradScaler``, one per optimizer (its scale adapts
from step to step; it restarts from its initial value after a resume).
"""

from __future__ import annotations

import weakref
from contextlib import nullcontext
from typing import ContextManager

import torch

from edgetrgl.config import PRECISIONS
from edgetrgl.errors import UserError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

_scalers: "weakref.WeakKeyDictionary[torch.optim.Optimizer, torch.amp.GradScaler]" = weakref.WeakKeyDictionary()


def autocast_for(precision: str, device: torch.device | str) -> ContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32).

    Raises:
        UserError: unknown precision, or one this torch cannot autocast to on this device.
    """
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp32":
        return nullcontext()
    device_type = torch.device(device).type
    dtype = _DTYPES[precision]
    available = getattr(torch.amp, "is_autocast_available", lambda _: device_type in ("cpu", "cuda"))
    if not available(device_type):
        raise UserError(f"--precision {precision}: torch {torch.__version__} has no autocast on {device_type}; use fp32")
    if device_type == "cpu" and dtype not in _cpu_autocast_dtypes():
        raise UserError(f"--precision {precision} is not supported on the CPU by torch {torch.__version__}; use bf16 or fp32")
    return torch.autocast(device_type, dtype=dtype)


def scaler_for(precision: str, optimizer: torch.optim.Optimizer, device: torch.device | str) -> torch.amp.GradScaler | None:
    """The gradient scaler of ``optimizer`` for an fp16 step (created on first use), else None."""
    if precision != "fp16":
        return None
    scaler = _scalers.get(optimizer)
    if scaler is None:
        scaler = _scalers[optimizer] = torch.amp.GradScaler(torch.device(device).type)
    return scaler


def _cpu_autocast_dtypes() -> tuple[torch.dtype, ...]:
    """CPU autocast takes bf16 always, and fp16 from the torch release that added it: ask torch."""
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16:
                return (torch.bfloat16, torch.float16)
    except (RuntimeError, TypeError):
        pass
    return (torch.bfloat16,)
