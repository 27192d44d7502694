"""Shared fixtures: tiny models and data, so the whole suite runs in minutes on 2 CPU cores."""

from __future__ import annotations

import pytest
import torch

from edgetrgl.config import TrainConfig
from edgetrgl.data import load_dataset


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def synthetic_data():
    """10 classes of 3x16x16 patterns, 512 train / 256 test."""
    return load_dataset("synthetic", num_train=512, num_test=256, seed=0)


def tiny_config(**overrides) -> TrainConfig:
    """A ResNet-20 at width 4 on the synthetic set: seconds per run."""
    values = dict(model="resnet20", model_options={"width": 4}, dataset="synthetic", modules=3, epochs=2,
                  batch_size=64, lr=0.05, device="cpu", out="", seed=0)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """edgetrgl's own cache ($EDGETRGL_CACHE: the image-check verdicts) in the session's temporary
    folder, never the user's ~/.cache; subprocesses inherit it."""
    monkeypatch.setenv("EDGETRGL_CACHE", str(tmp_path_factory.getbasetemp() / "edgetrgl-cache"))
