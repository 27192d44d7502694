"""Run by torchrun (one rank) from tests/test_distributed.py: a data-parallel run with the user's own
heads, started (``train``) or resumed (``resume``) through the front door with the same head factory.
Usage: _dist_head_factory_worker.py train|resume RUN_DIR CONFIG.toml"""

import sys
from pathlib import Path

from torch import nn

from edgetrgl.api import resume, train
from edgetrgl.config import TrainConfig, load_toml


class TaggedHead(nn.Sequential):
    """The user's head: pool, flatten, a linear layer; its class name marks it."""


def tagged_head(shape, num_classes):
    return TaggedHead(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(shape[0], num_classes))


if __name__ == "__main__":
    mode, run_dir, values = sys.argv[1], Path(sys.argv[2]), load_toml(sys.argv[3])
    if mode == "train":
        train(TrainConfig.from_dict({**values, "data_parallel": True}), out=run_dir, quiet=True, head_factory=tagged_head)
    else:
        result = resume(run_dir, quiet=True, head_factory=tagged_head)
        kinds = {type(head).__name__ for head in result.net.heads}
        (run_dir / "heads.txt").write_text(",".join(sorted(kinds)))
