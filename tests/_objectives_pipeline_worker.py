"""Run by torchrun from tests/test_objectives.py: the pipeline regime once per objective, in one
launch (starting the processes is most of the cost). Usage: _objectives_pipeline_worker.py OUT_ROOT CONFIG.toml"""

import sys
from pathlib import Path

from edgetrgl.config import TrainConfig, load_toml
from edgetrgl.api import train

root, values = Path(sys.argv[1]), load_toml(sys.argv[2])
for method in ("infopro", "infopro-c", "dgl", "predsim"):
    train(TrainConfig.from_dict({**values, "regime": "pipeline", "method": method}), out=root / method, quiet=True)
