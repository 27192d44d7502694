"""Training: the regimes (e2e, parallel, sequential, multilap), the run folder, the Python API."""

from edgetrgl.training.api import RunResult, build_network, evaluate, load_run, resume, train
from edgetrgl.training.trainer import Trainer

__all__ = ["RunResult", "Trainer", "build_network", "evaluate", "load_run", "resume", "train"]
