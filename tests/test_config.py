"""The configuration: typed sections, the flat spelling, and errors that name the field."""

from __future__ import annotations

import pytest

from edgetrgl.config import NetworkConfig, TrainConfig, load_toml
from edgetrgl.errors import UserError


def test_config_sections_and_flat_spelling_agree(tmp_path):
    flat = TrainConfig(modules=3, lr=0.1, budget="1MiB")
    by_section = TrainConfig(network=NetworkConfig(modules=3), lr=0.1, budget=2**20)
    assert flat == by_section and flat.network.modules == 3 and flat.budget == 2**20
    assert flat.replace(modules=5).modules == 5 and flat.modules == 3
    sectioned = tmp_path / "run.toml"
    sectioned.write_text('[network]\nmodules = 2\n[optim]\nlr = 0.2\n[memory]\nbudget = "1GB"\n')
    cfg = TrainConfig.from_dict(load_toml(sectioned))
    assert (cfg.modules, cfg.lr, cfg.budget) == (2, 0.2, 10**9)
    assert TrainConfig.from_dict(cfg.to_sections()) == cfg


@pytest.mark.parametrize("values, message", [
    ({"network": {"lr": 0.1}}, "belongs in \\[optim\\]"),
    ({"bogus": 1}, "unknown config key"),
    ({"budget": "12 parsecs"}, "unknown size unit"),
    ({"lr_schedule": "step"}, "--lr-schedule must be one of"),
])
def test_config_errors_name_the_field(values, message):
    with pytest.raises(UserError, match=message):
        TrainConfig.from_dict(values)
