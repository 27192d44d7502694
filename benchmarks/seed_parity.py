"""Per-module test accuracies of tiny fixed-seed runs (tests/conftest.py's tiny_config), to show a
refactor keeps the maths: run it before and after, and diff the two files.

    PYTHONPATH=. python benchmarks/seed_parity.py before.json   # on the old code
    PYTHONPATH=. python benchmarks/seed_parity.py after.json    # on the new code; diff before.json after.json

Issue 17 (one run body), 2 threads, torch 2.14.1 CPU, x86: identical before and after:
sequential [0.6875, 0.79296875, 0.8671875], parallel [0.6875, 0.63671875, 0.58984375],
e2e [0.35546875], multilap (2 laps, 1 epoch) [0.609375, 0.66796875, 0.8125].
The test that guards it: tests/test_distributed.py::test_torchrun_world_of_one_equals_one_process_for_every_single_process_regime.
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import tiny_config  # noqa: E402

from edgetrgl import api as training

if __name__ == "__main__":
    torch.set_num_threads(2)
    out = {}
    for regime, extra in [("sequential", {}), ("parallel", {}), ("e2e", {}), ("multilap", {"laps": 2, "epochs": 1})]:
        out[regime] = [m["test_accuracy"] for m in training.train(tiny_config(regime=regime, **extra), quiet=True).modules]
        print(regime, out[regime], flush=True)
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
