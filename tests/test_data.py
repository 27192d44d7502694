"""Data layer: bundled set, synthetic set, ImageFolder, loaders, and the user errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgetrgl.data import (
    DataSpec,
    FileImageDataset,
    TensorImageDataset,
    dataset_info,
    list_datasets,
    load_dataset,
    make_loader,
)
from edgetrgl.data.bundled import bundled_path
from edgetrgl.errors import UserError


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def _epoch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def _sorted_rows(x: torch.Tensor) -> torch.Tensor:
    """Images in a canonical order, to compare epochs up to order (key: a fixed random projection)."""
    flat = x.flatten(1).double()
    weights = torch.rand(flat.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return flat[torch.argsort(flat @ weights)]


# --- bundled mnist5k --------------------------------------------------------------------------

def test_bundled_file_is_small_and_complete():
    path = bundled_path()
    assert path.is_file()
    with path.open("rb") as fh:
        size = len(fh.read())
    assert size <= 2_000_000
    with path.open("rb") as fh, np.load(fh) as npz:
        assert npz["images"].shape == (5000, 28, 28) and npz["images"].dtype == np.uint8
        assert np.bincount(npz["labels"]).tolist() == [500] * 10


def test_mnist5k_splits(mnist5k):
    train, test, spec = mnist5k
    assert isinstance(train, TensorImageDataset) and isinstance(spec, DataSpec)
    assert (len(train), len(test)) == (4000, 1000)
    assert (spec.num_train, spec.num_test, spec.num_classes) == (4000, 1000, 10)
    assert (spec.in_channels, spec.image_size, spec.hflip) == (1, 28, False)
    assert train.images.shape == (4000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert torch.bincount(train.labels).tolist() == [400] * 10
    # Train and test are disjoint: no test image occurs in the training split.
    train_keys = {bytes(img.numpy()) for img in train.images}
    assert not any(bytes(img.numpy()) in train_keys for img in test.images)


def test_name_is_case_insensitive_and_default_is_mnist5k():
    assert load_dataset(" MNIST5K ")[2].name == "mnist5k"
    assert load_dataset()[2].name == "mnist5k"


def test_getitem_works_with_torch_dataloader(mnist5k):
    train = mnist5k[0]
    x, y = next(iter(torch.utils.data.DataLoader(train, batch_size=8)))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    plain = next(iter(make_loader(train, 8, shuffle=False, augment=False, seed=0)))[0]
    assert torch.equal(x, plain)


def test_train_fraction_is_stratified():
    train, _, spec = load_dataset("mnist5k", train_fraction=0.01, seed=3)
    assert len(train) == spec.num_train == 40
    assert torch.bincount(train.labels).tolist() == [4] * 10
    again = load_dataset("mnist5k", train_fraction=0.01, seed=3)[0]
    assert torch.equal(train.images, again.images)
    tiny = load_dataset("mnist5k", train_fraction=1e-6)[0]
    assert torch.bincount(tiny.labels).tolist() == [1] * 10  # at least one per class


def test_image_size_resizes():
    train, test, spec = load_dataset("mnist5k", image_size=32, train_fraction=0.01)
    assert spec.image_size == 32 and train.images.shape[-2:] == (32, 32)
    assert test.images.shape[-2:] == (32, 32)


# --- loaders ----------------------------------------------------------------------------------

def test_loader_batches_are_normalised_float32(mnist5k):
    train = mnist5k[0]
    loader = make_loader(train, 256, shuffle=True, augment=False, seed=0)
    assert len(loader) == 16  # ceil(4000 / 256)
    batches = list(loader)
    assert len(batches) == 16 and batches[-1][0].shape[0] == 4000 - 15 * 256
    x, y = batches[0]
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    x_all = torch.cat([b[0] for b in batches])
    assert abs(x_all.mean().item()) < 0.05 and abs(x_all.std().item() - 1) < 0.05
    assert len(make_loader(train, 256, shuffle=True, seed=0, drop_last=True)) == 15


def test_loader_is_deterministic_per_seed_and_epoch(mnist5k):
    train = mnist5k[0]
    a = _epoch(make_loader(train, 500, shuffle=True, augment=True, seed=1, epoch=2))
    b = _epoch(make_loader(train, 500, shuffle=True, augment=True, seed=1, epoch=2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    loader = make_loader(train, 500, shuffle=True, augment=True, seed=1, epoch=2)
    assert torch.equal(_epoch(loader)[0], _epoch(loader)[0])  # iterating again replays
    c = _epoch(make_loader(train, 500, shuffle=True, augment=True, seed=1, epoch=3))
    assert not torch.equal(a[1], c[1])
    d = _epoch(make_loader(train, 500, shuffle=False, augment=True, seed=1, epoch=3))
    e = _epoch(make_loader(train, 500, shuffle=False, augment=True, seed=1, epoch=4))
    assert torch.equal(d[1], e[1]) and not torch.equal(d[0], e[0])  # same order, new crops


def test_augment_false_gives_the_same_images_every_epoch():
    train = load_dataset("mnist5k", train_fraction=0.05)[0]
    e0 = _epoch(make_loader(train, 64, shuffle=True, augment=False, seed=0, epoch=0))
    e1 = _epoch(make_loader(train, 64, shuffle=True, augment=False, seed=0, epoch=1))
    assert not torch.equal(e0[1], e1[1])  # the order differs
    assert torch.equal(_sorted_rows(e0[0]), _sorted_rows(e1[0]))
    plain = _epoch(make_loader(train, 64, shuffle=False, augment=False, seed=0))
    assert torch.equal(plain[0], torch.stack([train[i][0] for i in range(len(train))]))


def test_augmentation_crops_with_zero_padding():
    spec = DataSpec("t", 2, 1, 32, False, (0.0,), (1.0,), 4, 0)
    images = torch.full((4, 1, 32, 32), 255, dtype=torch.uint8)
    ds = TensorImageDataset(images, torch.tensor([0, 1, 0, 1]), spec, augment=True)
    x, _ = next(iter(make_loader(ds, 4, shuffle=False, seed=0)))  # augment=None: dataset default
    assert x.shape == (4, 1, 32, 32)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and (x == 0).any()  # padding is black
    # A shift is at most 4 px, so the centre is always image.
    assert (x[:, :, 4:28, 4:28] == 1).all()


def test_hflip_only_where_spec_allows():
    row = torch.arange(16, dtype=torch.uint8).repeat(1, 1, 16, 1).expand(64, 1, 16, 16)
    labels = torch.zeros(64, dtype=torch.int64)
    for hflip in (False, True):
        spec = DataSpec("t", 1, 1, 16, hflip, (0.0,), (1.0,), 64, 0)
        ds = TensorImageDataset(row.clone(), labels, spec)
        g = torch.Generator().manual_seed(0)
        x, _ = ds.batch(torch.arange(64), augment=True, generator=g)
        centre = x[:, 0, 8, 6:10] * 255  # within the crop's reach of the middle: no padding
        flipped = (centre[:, 1] < centre[:, 0]).any().item()
        assert flipped == hflip


# --- synthetic --------------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_configurable():
    a_train, a_test, spec = load_dataset("synthetic", seed=5)
    b_train, b_test, _ = load_dataset("synthetic", seed=5)
    assert torch.equal(a_train.images, b_train.images) and torch.equal(a_test.labels, b_test.labels)
    assert (len(a_train), len(a_test), spec.num_classes) == (1024, 256, 10)
    assert a_train.images.shape[1:] == (3, 16, 16)
    c_train = load_dataset("synthetic", seed=6)[0]
    assert not torch.equal(a_train.images, c_train.images)
    small_train, small_test, small = load_dataset(
        "synthetic", image_size=8, in_channels=1, num_classes=4, num_train=40, num_test=12)
    assert small_train.images.shape == (40, 1, 8, 8) and len(small_test) == 12
    assert small.num_classes == 4 and torch.bincount(small_train.labels).tolist() == [10] * 4
    x, _ = next(iter(make_loader(small_train, 16, shuffle=True, seed=0)))
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.float32


def test_synthetic_rejects_unknown_options():
    with pytest.raises(UserError):
        load_dataset("synthetic", colour="red")
    with pytest.raises(UserError):
        load_dataset("synthetic", num_train=0)
    with pytest.raises(UserError):
        load_dataset("mnist5k", num_train=10)


# --- ImageFolder ------------------------------------------------------------------------------

def _write_folder(root, mode="RGB", size=(20, 12), split="test"):
    rng = np.random.default_rng(0)
    for part, count in (("train", 3), (split, 2)):
        for cls in ("cat", "dog"):
            folder = root / part / cls
            folder.mkdir(parents=True)
            for i in range(count):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels, mode=mode).save(folder / f"{i}.png")


def test_image_folder_loads(tmp_path):
    _write_folder(tmp_path)
    train, test, spec = load_dataset("imagefolder", data_dir=tmp_path, image_size=16)
    assert isinstance(train, FileImageDataset)
    assert (len(train), len(test), spec.num_classes, spec.in_channels) == (6, 4, 2, 3)
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 0
    loader = make_loader(train, 4, shuffle=True, augment=True, seed=0, epoch=1)
    assert len(loader) == 2
    a, b = _epoch(loader), _epoch(loader)
    assert a[0].shape == (6, 3, 16, 16) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = _epoch(make_loader(train, 4, shuffle=True, augment=True, seed=0, epoch=2))
    assert not torch.equal(a[0], c[0])
    plain = _epoch(make_loader(test, 3, shuffle=False, augment=False, seed=0))
    assert torch.equal(plain[0], torch.stack([test[i][0] for i in range(len(test))]))


def test_image_folder_grey_and_val(tmp_path):
    _write_folder(tmp_path, mode="L", split="val")
    train, test, spec = load_dataset("imagefolder", data_dir=tmp_path, train_fraction=0.4)
    assert (spec.in_channels, spec.image_size) == (1, 32)
    assert len(train) == 2 and sorted(train.targets.tolist()) == [0, 1] and len(test) == 4
    assert train[0][0].shape == (1, 32, 32)


def test_image_folder_errors(tmp_path):
    with pytest.raises(UserError):
        load_dataset("imagefolder")  # no data_dir
    with pytest.raises(UserError):
        load_dataset("imagefolder", data_dir=tmp_path / "nope")
    with pytest.raises(UserError):
        load_dataset("imagefolder", data_dir=tmp_path)  # no train/ test/
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError):
        load_dataset("imagefolder", data_dir=tmp_path)  # class folders without images


# --- errors and registry ----------------------------------------------------------------------

def test_unknown_name_and_bad_fraction():
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("imagenet22k")
    with pytest.raises(UserError):
        dataset_info("nope")
    for bad in (0, 1.5, -0.1, float("nan"), "half", True):
        with pytest.raises(UserError):
            load_dataset("mnist5k", train_fraction=bad)
    with pytest.raises(UserError):
        load_dataset("mnist5k", image_size=0)
    with pytest.raises(UserError):
        make_loader(load_dataset("synthetic", num_train=20, num_test=10)[0], 0, shuffle=False, seed=0)


@pytest.mark.parametrize("name", ["mnist", "fashionmnist", "cifar10", "cifar100", "svhn", "stl10"])
def test_torchvision_set_not_downloaded(tmp_path, monkeypatch, name):
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be touched without --download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(UserError, match="--download"):
        load_dataset(name, data_dir=tmp_path)  # exists but empty
    with pytest.raises(UserError, match="--download"):
        load_dataset(name, data_dir=tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def _write_idx(path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in MNIST's IDX format: magic, big-endian dims, raw bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_matches_bundled(tmp_path, mnist5k):
    """Offline check of the file-backed path: the bundled images written as MNIST's raw files."""
    train5k, test5k, spec5k = mnist5k
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, ds in (("train", train5k), ("t10k", test5k)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", ds.images[:, 0].numpy())
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", ds.labels.numpy())
    train, test, spec = load_dataset("mnist", data_dir=tmp_path)
    assert isinstance(train, FileImageDataset)
    assert (spec.num_train, spec.num_test, spec.mean, spec.std) == (4000, 1000, spec5k.mean, spec5k.std)
    ours = _epoch(make_loader(test, 250, shuffle=False, augment=False, seed=0))
    bundled = _epoch(make_loader(test5k, 250, shuffle=False, augment=False, seed=0))
    assert torch.equal(ours[0], bundled[0]) and torch.equal(ours[1], bundled[1])
    small = load_dataset("mnist", data_dir=tmp_path, train_fraction=0.01)[0]
    assert torch.bincount(small.targets).tolist() == [4] * 10
    x, y = next(iter(make_loader(small, 40, shuffle=True, augment=True, seed=0)))
    assert x.shape == (40, 1, 28, 28) and sorted(y.tolist()) == sorted(small.targets.tolist())


def test_registry_lists_every_dataset():
    names = list_datasets()
    assert names[0] == "mnist5k"
    assert {"synthetic", "mnist", "fashionmnist", "cifar10", "cifar100", "svhn", "stl10",
            "imagefolder"} <= set(names)
    for name in names:
        info = dataset_info(name)
        assert info and "\n" not in info
