"""What a run loads before it plans: its data, and the model carrying the user's head factory."""

from __future__ import annotations

import copy

import torch

from edgetrgl.config import TrainConfig
from edgetrgl.data import DataSpec, load_dataset
from edgetrgl.heads import HeadFactory
from edgetrgl.models import BlockNet, create_model


def load_data(cfg: TrainConfig) -> tuple:
    """``(train, test, spec)`` of ``cfg``'s dataset, as :func:`edgetrgl.train` loads it."""
    return load_dataset(cfg.dataset, data_dir=cfg.data_dir, download=cfg.download, augment=cfg.augment,
                        train_fraction=cfg.train_fraction, seed=cfg.seed, skip_bad_images=cfg.skip_bad_images,
                        **cfg.dataset_options)


def with_head_factory(model: BlockNet | None, head_factory: HeadFactory | None, cfg: TrainConfig,
                      spec: DataSpec) -> BlockNet | None:
    """The model carrying ``head_factory``, so every builder downstream (plan, run) uses it.

    A registry model is created here for that, seeded as the run would seed it."""
    if head_factory is None:
        return model
    if model is None:
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, in_channels=spec.in_channels, num_classes=spec.num_classes,
                             image_size=spec.image_size, **cfg.model_options)
    model = copy.copy(model)  # the caller's object stays as it was
    model.head_factory = head_factory
    return model
