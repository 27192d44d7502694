"""``--auto-resume`` (training/auto_resume.py) runs the same body as ``train``: the user's heads are
kept, and a finished run is reported exactly as it was reported when it finished."""

from __future__ import annotations

import io

import torch
from rich.console import Console
from torch import nn

from edgetrgl.devices import current_footprint
from edgetrgl.tables import module_table
from edgetrgl.api import train
from tests.conftest import tiny_config


class MeanHead(nn.Module):
    """A head of the user's own: average pool, then one linear layer."""

    def __init__(self, feature_shape, num_classes):
        super().__init__()
        self.linear = nn.Linear(feature_shape[0], num_classes)

    def forward(self, x):
        return self.linear(x.mean(dim=(2, 3)))


def test_auto_resume_keeps_the_head_factory_when_it_starts_and_when_it_reports(synthetic_data, tmp_path):
    cfg = tiny_config(epochs=1, modules=2)
    started = train(cfg, data=synthetic_data, out=tmp_path / "run", quiet=True, auto_resume=True, head_factory=MeanHead)
    assert all(isinstance(head, MeanHead) for head in started.net.heads)
    finished = train(cfg, data=synthetic_data, out=tmp_path / "run", quiet=True, auto_resume=True, head_factory=MeanHead)
    assert all(isinstance(head, MeanHead) for head in finished.net.heads)
    assert all(torch.equal(a, b) for a, b in zip(started.net.state_dict().values(), finished.net.state_dict().values()))


def _text(renderable) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_a_finished_run_is_reported_against_the_plans_budget(synthetic_data, tmp_path):
    """Under a device profile the plan's budget (what the tensors may take) is not the requested one
    (the whole process): the report of the finished run must show the same table the run showed."""
    requested = current_footprint().anon_bytes + 400 * 2**20  # room for tiny tensors beside the runtime
    cfg = tiny_config(epochs=1, modules=2, model_options={"width": 16}, device_profile="rpi4-2gb",
                      budget=f"{requested // 2**20}MiB")
    consoles = [Console(file=io.StringIO(), width=160, color_system=None) for _ in range(2)]
    result = train(cfg, data=synthetic_data, out=tmp_path / "run", console=consoles[0], auto_resume=True)
    train(cfg, data=synthetic_data, out=tmp_path / "run", console=consoles[1], auto_resume=True)  # finished
    summary = result.summary()
    title = f"{summary['model']} / {cfg.regime} / {result.spec.name}"
    planned = _text(module_table(summary["modules"], title, summary["plan"]["budget"]))
    assert summary["plan"]["budget"] != cfg.budget
    assert planned != _text(module_table(summary["modules"], title, cfg.budget))  # the test can tell them apart
    trained, reported = (c.file.getvalue() for c in consoles)
    assert planned in trained and planned in reported
    assert "has already finished: best module" in reported
