"""The TOML presets in configs/: each validates, default.toml is TrainConfig()'s defaults, and the
paper preset is the official recipe; the constant LR schedule keeps the rate fixed."""

from pathlib import Path

import pytest
import torch

from edgetrgl.cli.main import build_parser
from edgetrgl.cli.train import config_from_args
from edgetrgl.config import TrainConfig, load_toml
from edgetrgl.errors import UserError
from edgetrgl.step import set_lr

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = sorted(CONFIGS.glob("*.toml"))


def test_presets_exist():
    assert {p.name for p in PRESETS} >= {"default.toml", "paper.toml", "fast.toml"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_validates_and_starts_with_a_comment(path):
    TrainConfig.from_dict(load_toml(path))
    assert path.read_text().startswith("#")  # where its values come from


def test_default_preset_is_what_train_does_without_flags():
    values = load_toml(CONFIGS / "default.toml")
    assert TrainConfig.from_dict(values) == TrainConfig()
    documented = set(values) | {"data_dir", "micro_batch", "boundaries", "budget", "cache_dir", "device_profile", "init_from"}
    assert documented == set(TrainConfig().to_dict())  # a new field must be listed


def test_paper_preset_is_the_official_recipe_through_the_cli():
    args = build_parser().parse_args(["train", "--config", str(CONFIGS / "paper.toml"), "--epochs", "3"])
    cfg = config_from_args(args)
    assert (cfg.init, cfg.init_gain, cfg.lr, cfg.lr_schedule) == ("orthogonal", 0.1, 0.003, "constant")
    assert (cfg.weight_decay, cfg.label_smoothing, cfg.batch_size, cfg.momentum) == (2e-4, 0.1, 256, 0.9)
    assert (cfg.tau, cfg.tau_schedule, cfg.regime, cfg.epochs) == (1.0, "double", "parallel", 3)
    assert (cfg.head, cfg.optimizer) == ("trgl", "sgd")  # the authors' 1CNN with its fixed AvgPool2d


def test_predsim_preset_is_the_authors_adam_recipe():
    cfg = TrainConfig.from_dict(load_toml(CONFIGS / "predsim.toml"))
    assert (cfg.method, cfg.regime, cfg.optimizer, cfg.lr) == ("predsim", "parallel", "adam", 5e-4)
    assert (cfg.weight_decay, cfg.label_smoothing, cfg.batch_size) == (0.0, 0.0, 128)


def test_lr_schedules():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    set_lr(opt, "constant", 0.003, 50, 100)
    assert opt.param_groups[0]["lr"] == 0.003
    set_lr(opt, "cosine", 0.1, 50, 100)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(UserError, match="--lr-schedule"):
        TrainConfig(lr_schedule="step")
