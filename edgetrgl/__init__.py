"""edgetrgl: module-wise training with transport regularization (TRGL) under a memory budget.

    import edgetrgl
    result = edgetrgl.train(edgetrgl.TrainConfig(model="resnet20", modules=4, epochs=2))
    print(result.best_module)
"""

from edgetrgl.blocks import ResidualBlock
from edgetrgl.config import TrainConfig, format_bytes, parse_size
from edgetrgl.data import list_datasets, load_dataset, make_loader
from edgetrgl.errors import UserError
from edgetrgl.export import export_run, predict
from edgetrgl.models import BlockNet, create_model, list_models
from edgetrgl.modular import ModularNet, build_modular, split_blocks
from edgetrgl.api import RunResult, build_network, evaluate, load_run, resume, train
from edgetrgl._version import __version__

__all__ = [
    "BlockNet", "ModularNet", "ResidualBlock", "RunResult", "TrainConfig", "UserError",
    "build_modular", "build_network", "create_model", "evaluate", "export_run", "format_bytes", "list_datasets",
    "list_models", "load_dataset", "load_run", "make_loader", "parse_size", "predict", "resume", "split_blocks", "train",
]
