"""Fixed-seed per-module test accuracies of tiny runs (conftest's tiny_config), pinned: a change that
should not alter the maths must leave them equal. Pinned on torch 2.14.1, x86_64, 2 threads (the
figures of benchmarks/seed_parity.py before it retired, identical before and after issue 17's one
run body); other torch versions or machines round differently, so the test skips there.
Re-pinned twice since, on purpose, both times for the transport gradient of a BatchNorm tail
(transport._BatchNormTail), equal to the old one within fp32 but not bit for bit: first rebuilt in
closed form from the forward's statistics, then folded into one multiply-add per channel. With that
closed form switched off the first figures come back."""

import platform

import pytest
import torch
from tests.conftest import tiny_config

from edgetrgl import api

PINNED = {
    "sequential": [0.6796875, 0.80078125, 0.85546875],
    "parallel": [0.6796875, 0.625, 0.58984375],
    "e2e": [0.35546875],
    "multilap": [0.57421875, 0.765625, 0.85546875],
}
EXTRA = {"multilap": {"laps": 2, "epochs": 1}}


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.skipif(torch.__version__.split("+")[0] != "2.14.1" or platform.machine() != "x86_64",
                    reason="accuracies pinned on torch 2.14.1, x86_64")
@pytest.mark.parametrize("regime", list(PINNED))
def test_fixed_seed_accuracies_are_unchanged(regime, two_threads):
    # without a validation split: the figures predate it (the default holds a tenth of this training set out)
    result = api.train(tiny_config(regime=regime, val_fraction=0, **EXTRA.get(regime, {})), quiet=True)
    assert [m["test_accuracy"] for m in result.modules] == PINNED[regime]
