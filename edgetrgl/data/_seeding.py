"""Derive independent, reproducible seeds from a tuple of integers."""

from __future__ import annotations

import numpy as np


def derive_seed(*keys: int) -> int:
    """Return a 63-bit seed that depends on every key, for ``torch.Generator().manual_seed``.

    Why not ``seed + epoch``: that makes (seed=1, epoch=0) replay (seed=0, epoch=1). NumPy's
    ``SeedSequence`` hashes the keys so that distinct tuples give unrelated streams.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
