"""Deterministic, stratified index selection shared by every dataset."""

from __future__ import annotations

import torch

from ._seeding import derive_seed
from ..errors import UserError


def check_fraction(train_fraction: float) -> float:
    """Return ``train_fraction`` as a float if it lies in (0, 1].

    Raises:
        UserError: not a number, or outside (0, 1].
    """
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)):
        raise UserError(f"train_fraction must be a number in (0, 1], got {train_fraction!r}")
    # Written so that NaN fails too (every comparison with NaN is False).
    if not (0.0 < float(train_fraction) <= 1.0):
        raise UserError(f"train_fraction must be in (0, 1], got {train_fraction}")
    return float(train_fraction)


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Pick ``round(fraction * n_c)`` (at least 1) indices of every class c, at random but reproducibly.

    Args:
        labels: (N,) int64 labels.
        fraction: in (0, 1]; 1 returns ``arange(N)``.
        seed: same seed, same subset.

    Returns:
        Sorted (M,) int64 indices into ``labels``.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if fraction >= 1.0:
        return torch.arange(labels.numel())
    generator = torch.Generator().manual_seed(derive_seed(seed, 0x5B5E7))
    picked = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        keep = max(1, round(fraction * members.numel()))
        order = torch.randperm(members.numel(), generator=generator)
        picked.append(members[order[:keep]])
    return torch.sort(torch.cat(picked)).values
