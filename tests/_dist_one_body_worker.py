"""Run by torchrun (one rank) from tests/test_distributed.py: the single-process regimes as a torchrun
world of one, to equal the same runs in one process. Usage: _dist_one_body_worker.py OUT_ROOT CONFIG.toml"""

import sys
from pathlib import Path

from edgetrgl.config import TrainConfig, load_toml
from edgetrgl.api import train

ONE_BODY_REGIMES = (("sequential", {}), ("parallel", {}), ("e2e", {}), ("multilap", {"laps": 2, "epochs": 1}))

if __name__ == "__main__":
    root, values = Path(sys.argv[1]), load_toml(sys.argv[2])
    for regime, extra in ONE_BODY_REGIMES:
        train(TrainConfig.from_dict({**values, "regime": regime, "data_parallel": True, **extra}), out=root / regime,
              quiet=True)
