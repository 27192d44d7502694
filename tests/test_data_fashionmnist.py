"""Fashion-MNIST: found offline (Debian's package, $EDGETRGL_DATA, --data-dir, torchvision's layout),
read from the IDX files as their headers say, one clear line when it is nowhere, and a real training run.

The tests on the real files skip where Debian's ``dataset-fashion-mnist`` is not installed; the
search-order and error tests write small IDX files of their own and run everywhere.
"""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest
import torch

import edgetrgl
from edgetrgl.config import TrainConfig
from edgetrgl.data import TensorImageDataset, dataset_location, load_dataset, make_loader
from edgetrgl.data import fashion_mnist
from edgetrgl.data.idx_files import idx_header, read_idx
from edgetrgl.errors import UserError

from _idx_files import fake_fashion_mnist, write_idx

DEBIAN = fashion_mnist.SYSTEM_DIRS[0]
needs_debian = pytest.mark.skipif(not fashion_mnist._complete(DEBIAN),
                                  reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network fails the test."""
    def no_network(*args, **kwargs):
        raise AssertionError("the network must not be touched without --download")

    monkeypatch.setattr("urllib.request.urlopen", no_network)


@pytest.fixture
def no_system_copy(monkeypatch, tmp_path, offline):
    """Neither Debian's copy nor the user's defaults: only what a test puts in place is found."""
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", (tmp_path / "no-debian",))
    monkeypatch.delenv("EDGETRGL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# --- the real files ---------------------------------------------------------------------------

@needs_debian
def test_debian_copy_is_found_and_matches_its_idx_headers(monkeypatch, offline):
    monkeypatch.delenv("EDGETRGL_DATA", raising=False)
    train, test, spec = load_dataset("fashionmnist")
    for split, ds in (("train", train), ("test", test)):
        images_file, labels_file = (fashion_mnist._file(DEBIAN, n) for n in fashion_mnist.FILES[split])
        n, rows, cols = idx_header(images_file)
        assert idx_header(labels_file) == (n,)
        assert ds.images.shape == (n, 1, rows, cols) and ds.images.dtype == torch.uint8
        assert torch.bincount(ds.labels).tolist() == [n // 10] * 10  # Fashion-MNIST is balanced
        # the same bytes as the file, in the file's order
        with gzip.open(labels_file) as fh:
            raw_labels = np.frombuffer(fh.read(), np.uint8, offset=8)
        assert torch.equal(ds.labels, torch.from_numpy(raw_labels.astype(np.int64)))
        with gzip.open(images_file) as fh:
            first = np.frombuffer(fh.read(16 + rows * cols), np.uint8, offset=16).reshape(rows, cols)
        assert torch.equal(ds.images[0, 0], torch.from_numpy(first.copy()))
    assert (len(train), len(test)) == (60_000, 10_000)
    assert (spec.num_classes, spec.in_channels, spec.image_size) == (10, 1, 28)
    assert spec.hflip  # clothes may be mirrored
    assert spec.mean == (0.2860,) and spec.std == (0.3530,)
    assert str(DEBIAN) in dataset_location("fashionmnist")


@needs_debian
def test_a_stratified_slice_of_the_real_files_trains(monkeypatch, offline):
    monkeypatch.delenv("EDGETRGL_DATA", raising=False)
    train, test, spec = load_dataset("fashionmnist", train_fraction=0.002, seed=3)
    assert torch.bincount(train.labels).tolist() == [12] * 10 and spec.num_train == 120
    x, y = next(iter(make_loader(train, 120, shuffle=True, augment=True, seed=0)))
    assert x.shape == (120, 1, 28, 28) and x.dtype == torch.float32
    # every 10th test image (1,000, 100 per class: the test files are balanced), to keep it seconds
    test = TensorImageDataset(test.images[::10], test.labels[::10], spec)
    cfg = TrainConfig(model="resnet20", model_options={"width": 4}, dataset="fashionmnist",
                      train_fraction=0.002, modules=2, epochs=8, batch_size=20, lr=0.05, device="cpu",
                      out="", seed=0)
    result = edgetrgl.train(cfg, data=(train, test, spec), quiet=True)
    accuracies = [m["test_accuracy"] for m in result.modules]
    assert len(accuracies) == 2
    # chance is 10% (+- 3 points on 1,000 images); 120 training images already do far better (~55%)
    assert max(accuracies) > 0.3, accuracies


# --- where it is looked for -------------------------------------------------------------------

def test_search_order_env_then_debian_then_default(no_system_copy, monkeypatch, tmp_path):
    debian = fake_fashion_mnist(tmp_path / "no-debian", fill=1)
    assert dataset_location("fashionmnist").startswith(str(debian))
    assert int(load_dataset("fashionmnist")[0].images.max()) == 1
    env = fake_fashion_mnist(tmp_path / "env" / "FashionMNIST" / "raw", fill=2, gz=False)  # torchvision's layout
    monkeypatch.setenv("EDGETRGL_DATA", str(tmp_path / "env"))
    assert dataset_location("fashionmnist").startswith(str(env))
    assert int(load_dataset("fashionmnist")[0].images.max()) == 2
    monkeypatch.delenv("EDGETRGL_DATA")
    (debian / "train-images-idx3-ubyte.gz").unlink()  # Debian's copy incomplete: the default folder next
    default = fake_fashion_mnist(tmp_path / "home" / ".cache" / "edgetrgl" / "data" / "fashion-mnist", fill=3)
    assert int(load_dataset("fashionmnist")[0].images.max()) == 3
    assert "the default data folder" in dataset_location("fashionmnist")
    assert default.exists()


def test_data_dir_is_the_only_place_looked_at(no_system_copy, tmp_path):
    fake_fashion_mnist(tmp_path / "no-debian")
    mine = fake_fashion_mnist(tmp_path / "mine", n_train=60, fill=7)
    train, test, spec = load_dataset("fashionmnist", data_dir=mine, train_fraction=0.5, seed=1)
    assert (spec.num_train, spec.num_test, int(train.images.max())) == (30, 20, 7)
    with pytest.raises(UserError, match="apt install dataset-fashion-mnist"):
        load_dataset("fashionmnist", data_dir=tmp_path / "empty")  # Debian's copy is not a fallback here


def test_nowhere_says_how_to_get_it_in_one_line(no_system_copy, tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("fashionmnist")
    message = str(err.value)
    assert "apt install dataset-fashion-mnist" in message and "--download" in message and "\n" not in message
    assert "not found" in dataset_location("fashionmnist")


def test_cli_without_the_data_exits_2_with_one_line(tmp_path):
    code = ("import sys, pathlib; from edgetrgl.data import fashion_mnist; "
            f"fashion_mnist.SYSTEM_DIRS = (pathlib.Path({str(tmp_path / 'none')!r}),); "
            "from edgetrgl.cli.main import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "train", "--dataset", "fashionmnist", "--epochs", "1",
                           "--device", "cpu", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=120, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                            "PYTHONPATH": ":".join(sys.path)})
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgetrgl: error:"), proc.stderr
    assert "apt install dataset-fashion-mnist" in lines[0] and "--download" in lines[0]


def test_datasets_command_says_where_each_set_is(tmp_path):
    mine = fake_fashion_mnist(tmp_path / "mine")
    proc = subprocess.run([sys.executable, "-m", "edgetrgl", "datasets", "--data-dir", str(tmp_path / "mine")],
                          capture_output=True, text=True, timeout=120, env={"COLUMNS": "250", "HOME": str(tmp_path),
                                                                            "PATH": "/usr/bin:/bin",
                                                                            "PYTHONPATH": ":".join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "fashionmnist" in line)
    assert str(mine) in row and "--data-dir" in row and "40 training images" in row
    assert "bundled in the package" in proc.stdout


# --- files that are not what they claim -------------------------------------------------------

def test_broken_files_are_user_errors(no_system_copy, tmp_path):
    folder = fake_fashion_mnist(tmp_path / "bad")
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (100).to_bytes(4, "big") + bytes(40)))
    with pytest.raises(UserError, match="header promises"):
        load_dataset("fashionmnist", data_dir=folder)
    labels.write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="could not read"):
        load_dataset("fashionmnist", data_dir=folder)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(39) % 10, gz=False)  # one label short
    with pytest.raises(UserError, match="not one split"):
        load_dataset("fashionmnist", data_dir=folder)
    write_idx(folder / "train-labels-idx1-ubyte", np.full(40, 12), gz=False)
    with pytest.raises(UserError, match="10 classes"):
        load_dataset("fashionmnist", data_dir=folder)


def test_read_idx_round_trip(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    write_idx(tmp_path / "x-idx3-ubyte", array, gz=True)
    assert torch.equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), torch.from_numpy(array))
    assert idx_header(tmp_path / "x-idx3-ubyte.gz") == (5, 3, 4)
