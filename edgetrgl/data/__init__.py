"""Datasets and loaders: the bundled MNIST sample, synthetic data, Fashion-MNIST, torchvision sets, ImageFolder.

    train, test, spec = load_dataset("mnist5k", train_fraction=0.1, seed=0)
    for x_BCHW, y_B in make_loader(train, 128, shuffle=True, seed=0, epoch=3):
        ...
"""

from .augment import normalise, random_crop_flip
from .feature_dataset import TensorFeatureDataset, synthetic_features, tensor_data
from .file_dataset import FileImageDataset
from .loader import make_loader
from .registry import DEFAULT_DATASET, dataset_info, dataset_location, list_datasets, load_dataset
from .spec import DataSpec
from .tensor_dataset import TensorImageDataset
from .torchvision_sets import default_data_dir

__all__ = [
    "DEFAULT_DATASET",
    "DataSpec",
    "FileImageDataset",
    "TensorFeatureDataset",
    "TensorImageDataset",
    "dataset_info",
    "dataset_location",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "make_loader",
    "normalise",
    "random_crop_flip",
    "synthetic_features",
    "tensor_data",
]
