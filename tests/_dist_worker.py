"""Run by torchrun from tests/test_distributed.py: data-parallel runs of several regimes in one launch
(starting the processes once is most of the cost). Usage: _dist_worker.py OUT_ROOT CONFIG.toml"""

import sys
from pathlib import Path

from edgetrgl.config import TrainConfig, load_toml
from edgetrgl.api import train

root, values = Path(sys.argv[1]), load_toml(sys.argv[2])
for regime, extra in (("parallel", {}), ("sequential", {"cache": "disk", "epochs": 1}), ("e2e", {"epochs": 1})):
    cfg = TrainConfig.from_dict({**values, "regime": regime, "data_parallel": True, **extra})
    train(cfg, out=root / regime, quiet=True)
