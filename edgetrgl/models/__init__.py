"""Model registry: every builder returns a :class:`BlockNet` (stem + blocks, no classifier).

Importing this package imports each model family so that it registers its names.
"""

from edgetrgl.models.base import BlockNet
from edgetrgl.models.registry import create_model, list_models, model_info, register_model

# Imported for their side effect: each file registers its models.
from edgetrgl.models import cifar_resnet, km_resnet, torchvision_resnet, vgg, vit  # noqa: F401, E402

__all__ = ["BlockNet", "create_model", "list_models", "model_info", "register_model"]
