"""Training: the regimes (e2e, parallel, sequential, multilap), the run folder, the Python API."""

from edgetrgl.train.api import RunResult, build_network, evaluate, load_run, resume, train
from edgetrgl.train.trainer import Trainer

__all__ = ["RunResult", "Trainer", "build_network", "evaluate", "load_run", "resume", "train"]
