"""The validation split: a stratified, seeded part of the training set held out to choose the best module.

Selection happens on validation data and reporting on test data: a module picked by its test
accuracy reports an optimistic number. The split is a pure function of the training labels, the
fraction and the seed, so a resumed run or an export recomputes the same one; its record (fraction,
seed, sizes and a hash of the indices) goes into the run folder so that a changed split is noticed.

    train, val, record = split_validation(train, "auto", seed=0)
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ._seeding import derive_seed
from .feature_dataset import TensorFeatureDataset
from .file_dataset import FileImageDataset
from .tensor_dataset import TensorImageDataset
from ..errors import UserError

AUTO_FRACTION = 0.1
# "auto" holds out AUTO_FRACTION only where every class keeps at least this many validation samples:
# fewer make the validation accuracy of a module too coarse to rank modules by
MIN_VAL_PER_CLASS = 10
_SPLIT_SEED = 0x7A1  # mixed into the run's seed: the split is not the same draw as train_fraction's


def labels_of(dataset) -> torch.Tensor:
    """The (N,) int64 labels of one of this package's datasets."""
    return torch.as_tensor(dataset.targets, dtype=torch.int64)


def resolve_val_fraction(val_fraction: float | str, labels: torch.Tensor) -> float:
    """The fraction to hold out: ``val_fraction`` itself, or for ``"auto"`` :data:`AUTO_FRACTION`
    where the smallest class keeps :data:`MIN_VAL_PER_CLASS` validation samples, else 0.

    Raises:
        UserError: not ``"auto"`` nor a number in [0, 1).
    """
    if val_fraction == "auto":
        smallest = int(torch.bincount(labels).min()) if labels.numel() else 0
        return AUTO_FRACTION if round(AUTO_FRACTION * smallest) >= MIN_VAL_PER_CLASS else 0.0
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val-fraction must be auto or a number in [0, 1), got {val_fraction!r}")
    return float(val_fraction)


def validation_indices(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` sorted indices: ``round(fraction * n_c)`` (at least 1) of every class c to
    validation, drawn with a generator seeded by ``seed``; the rest stay in training.

    Raises:
        UserError: a class would keep no training sample.
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, _SPLIT_SEED))
    held = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        take = max(1, round(fraction * members.numel()))
        if take >= members.numel():
            raise UserError(f"--val-fraction {fraction} leaves class {c} ({members.numel()} training sample(s)) "
                            f"nothing to train on; lower it, or --val-fraction 0")
        held.append(members[torch.randperm(members.numel(), generator=generator)[:take]])
    val = torch.sort(torch.cat(held)).values
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[val] = False
    return torch.nonzero(keep).flatten(), val


def subset(dataset, indices: torch.Tensor):
    """The samples ``indices`` of ``dataset``, as a dataset of the same kind (augmentation as it was):
    a validation part here, a data-parallel rank's shard in ``edgetrgl.distributed.data_parallel``."""
    if isinstance(dataset, TensorImageDataset):
        return TensorImageDataset(dataset.images[indices], dataset.labels[indices], dataset.spec,
                                  augment=dataset.augment)
    if isinstance(dataset, FileImageDataset):
        return FileImageDataset(dataset.base, dataset.indices[indices], dataset.spec, mode=dataset.mode,
                                augment=dataset.augment)
    if isinstance(dataset, TensorFeatureDataset):
        return TensorFeatureDataset(dataset.inputs[indices], dataset.labels[indices], dataset.spec)
    raise TypeError(f"cannot take a subset of a {type(dataset).__name__}")


def split_validation(train_set, val_fraction: float | str, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """Hold a stratified, seeded part of ``train_set`` out for validation.

    Args:
        train_set: the training split (any dataset of this package).
        val_fraction: in [0, 1), or ``"auto"`` (see :func:`resolve_val_fraction`).
        seed: the run's seed; the same seed and labels give the same split.

    Returns:
        ``(train, val, record)``: ``val`` is None for a fraction of 0 (``train`` is then
        ``train_set`` itself); ``record`` says fraction, seed, sizes and the indices' SHA-256.

    Raises:
        UserError: a bad fraction, or one that leaves a class nothing to train on.
    """
    labels = labels_of(train_set)
    fraction = resolve_val_fraction(val_fraction, labels)
    record: dict[str, Any] = {"fraction": fraction, "requested": val_fraction, "seed": seed}
    if fraction == 0.0:
        return train_set, None, {**record, "samples": 0, "train_samples": len(train_set), "sha256": None}
    train_idx, val_idx = validation_indices(labels, fraction, seed)
    digest = hashlib.sha256(val_idx.numpy().astype("<i8").tobytes()).hexdigest()
    record.update(samples=int(val_idx.numel()), train_samples=int(train_idx.numel()), sha256=digest)
    val = subset(train_set, val_idx)
    if hasattr(val, "augment"):
        val.augment = False  # validation images are scored as the test images are: never augmented
    return subset(train_set, train_idx), val, record


def check_same_split(saved: dict[str, Any] | None, record: dict[str, Any], where: str) -> None:
    """Refuse to continue a run whose validation split differs from the one it started with.

    Raises:
        UserError: one line, saying what the run was split with.
    """
    if saved is None:
        return
    if (saved.get("fraction"), saved.get("sha256")) != (record["fraction"], record["sha256"]):
        raise UserError(f"{where} held out {saved.get('fraction')} of its training set for validation "
                        f"({saved.get('samples')} samples, seed {saved.get('seed')}); this would hold out "
                        f"{record['fraction']} ({record['samples']} samples): continue it with --val-fraction "
                        f"{saved.get('requested', saved.get('fraction'))} and the same data, or start a new run")
