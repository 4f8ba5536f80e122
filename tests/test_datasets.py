"""Datasets as one plug-in point: a toy dataset registered in a test trains without another file touched; the MNIST
family reads the four idx files in Debian's bare layout and in torchvision's, held whole for the batched path; a
missing set is one line naming both ways to get it; no per-dataset branch is left outside the registry's entries."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli
from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.augment import digits_views
from ssltheory.practice.data.datasets import TensorImages, build_data, find_idx, read_idx
from ssltheory.practice.data.registry import DATASETS, DatasetSpec, Splits, register_dataset
from ssltheory.practice.engine.train import train

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--batch-size", "32", "--max-steps", "4", "--measure-every", "2", "--probe-size", "64", "--proj-hidden", "32",
        "--proj-dim", "16", "--knn-every", "0", "--epochs", "1", "--width", "0.25"]


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """An idx file of uint8 ``array`` (the MNIST format: magic 0x00 0x00 0x08 ndim, big-endian sizes, the bytes)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def fashion_files(folder: Path, gz: bool = True, n_train: int = 256, n_test: int = 64, seed: int = 0) -> Path:
    """Small Fashion-MNIST-format files: class c is a bright square at a position of its own on noise, so that the
    classes are separable and kNN can tell them apart."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, q = divmod(int(c), 4)
            images[i, 2 + 8 * r:8 + 8 * r, 2 + 6 * q:8 + 6 * q] = 230
        write_idx(folder / f"{stem}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{stem}-labels-idx1-ubyte", labels, gz)
    return folder


def test_idx_files_are_read_in_both_layouts_gzipped_or_not(tmp_path):
    bare = fashion_files(tmp_path / "debian", gz=True)
    raw = fashion_files(tmp_path / "tv" / "FashionMNIST" / "raw", gz=False)
    assert find_idx(bare, "FashionMNIST") == bare
    assert find_idx(tmp_path / "tv", "FashionMNIST") == raw
    assert find_idx(tmp_path, "FashionMNIST") is None
    a, b = read_idx(bare / "train-images-idx3-ubyte.gz"), read_idx(raw / "train-images-idx3-ubyte")
    assert a.shape == (256, 28, 28) and a.dtype == np.uint8 and np.array_equal(a, b)
    cut = tmp_path / "cut-idx3-ubyte"
    cut.write_bytes((raw / "train-images-idx3-ubyte").read_bytes()[:1000])
    with pytest.raises(Exception, match="cut short"):
        read_idx(cut)


def test_fashion_mnist_splits_are_held_whole_as_bytes(tmp_path):
    fashion_files(tmp_path / "f")
    data = build_data(TrainConfig(dataset="fashion-mnist", data_dir=str(tmp_path / "f")))
    assert isinstance(data.ssl, TensorImages) and data.ssl.images.shape == (256, 1, 28, 28)
    assert data.ssl.images.dtype == torch.uint8 and len(data.test_eval) == 64 and data.num_classes == 10
    x, y = data.test_eval[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)  # normalised eval view
    v1, v2 = data.ssl[0][0]
    assert v1.shape == v2.shape == (1, 28, 28)
    cfg = TrainConfig(dataset="fashion-mnist")
    assert (cfg.resolved_backbone, cfg.resolved_image_size, cfg.resolved_data_path("cpu")) == ("convnet", 28, "device")


def test_a_set_held_in_memory_is_measured_without_a_per_image_step(tmp_path, monkeypatch):
    """kNN bank, probe set and the collapse metric's split go through TensorImages.take in batches (no __getitem__)
    and give the same features as the per-image DataLoader path."""
    from torch.utils.data import Subset

    from ssltheory.practice.measure.evaluate import extract, held_items

    fashion_files(tmp_path / "f")
    data = build_data(TrainConfig(dataset="fashion-mnist", data_dir=str(tmp_path / "f")))
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    fast, y_fast = extract(net, Subset(data.train_eval, list(range(0, 256, 3))), torch.device("cpu"), batch_size=40)
    data.train_eval.deterministic = False  # the per-image DataLoader path
    assert held_items(data.train_eval, [0, 1]) is None
    slow, y_slow = extract(net, Subset(data.train_eval, list(range(0, 256, 3))), torch.device("cpu"), batch_size=40)
    assert torch.equal(y_fast, y_slow) and torch.allclose(fast, slow, atol=1e-6)
    data.train_eval.deterministic = True
    monkeypatch.setattr(TensorImages, "__getitem__", lambda self, i: pytest.fail("a per-image step"))
    extract(net, data.train_eval, torch.device("cpu"))
    with pytest.raises(ValueError, match="deterministic"):
        data.ssl.take(torch.arange(4))


@pytest.mark.parametrize("layout", ["debian", "torchvision"])
def test_train_fashion_mnist_from_either_layout(layout, tmp_path):
    if layout == "debian":
        data_dir = fashion_files(tmp_path / "share" / "fashion-mnist", gz=True)
    else:
        fashion_files(tmp_path / "data" / "FashionMNIST" / "raw", gz=False)
        data_dir = tmp_path / "data"
    r = cli("train", "fashion-mnist", "--data-dir", str(data_dir), *FAST, "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if x]
    assert records[0]["note"] == "random init" and 0 <= records[0]["knn_acc"] <= 1
    assert any("probe_auc" in rec for rec in records)


def test_a_missing_mnist_family_set_names_both_ways_to_get_it(tmp_path):
    r = cli("train", "fashion-mnist", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "run"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "apt-get install dataset-fashion-mnist" in lines[0] and "--download" in lines[0]
    assert "FashionMNIST/raw" in lines[0] and not (tmp_path / "run").exists()


@pytest.fixture
def toy_dataset():
    """A dataset registered the way a user would, in a few lines: no other file edited."""
    def load(cfg):
        from ssltheory.practice.data.datasets import _eval, _views

        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 255, (96, 1, 12, 12), generator=g, dtype=torch.uint8)
        labels = torch.arange(96) % 3
        return Splits(TensorImages(images, labels, _views(cfg)), TensorImages(images, labels, _eval(cfg)),
                      TensorImages(images[:30], labels[:30], _eval(cfg)), 1, 3)

    register_dataset(DatasetSpec("toy-squares", "96 random 12 px grey images in 3 classes", 1, 3, 12, digits_views,
                                 load, "generated (no files)", backbone="convnet", in_memory=True,
                                 batched_on_cpu=True))
    yield
    DATASETS.pop("toy-squares")


def test_a_dataset_is_one_registry_entry(toy_dataset, tmp_path):
    cfg = TrainConfig(dataset="toy-squares", batch_size=32, max_steps=4, measure_every=2, probe_size=32,
                      proj_hidden=32, proj_dim=16, knn_every=0, epochs=2, width=0.25)
    assert (cfg.resolved_backbone, cfg.resolved_image_size, cfg.resolved_data_path("cpu")) == ("convnet", 12, "device")
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 4
    assert "toy-squares" in cli("train", "--help").stdout
    r = cli("train", "toy-squares", *FAST, "--data-path", "loader", "--out", str(tmp_path / "cli"))
    assert r.returncode == 0, r.stderr


NAMES = r"""["'](digits|stl10|cifar10|cifar100|svhn|imagenet|folder|synthetic|fashion-mnist|mnist|kmnist)["']"""
PER_DATASET = re.compile(rf"dataset\s*(==|!=|\bin\b)|(==|!=)\s*{NAMES}|{NAMES}\s*(==|!=)|\(\s*{NAMES}\s*,")
"""A branch on a dataset's name: a comparison with a name, or a tuple of names."""


def test_no_per_dataset_branch_outside_the_registry_entries():
    """Only practice/data/datasets.py (the entries and their loaders) branches on a dataset's name; everything else
    in practice/ and cli/ asks the registry (a dataset's default, "digits", is no branch). The pattern finds the
    branches this issue removed (27 lines of them in the code before it, commit 747f849)."""
    found = []
    for folder in ("practice", "cli"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "practice" / "data" / "datasets.py":
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if PER_DATASET.search(code) and not code.strip().startswith(('"', "'")):
                    found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)


DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST is not installed here (make data)")
def test_the_real_fashion_mnist_files_when_installed():
    """Debian's package (what `make data` and CI install): 60,000 + 10,000 images, 10 balanced classes, read whole."""
    data = build_data(TrainConfig(dataset="fashion-mnist", data_dir=str(DEBIAN_FMNIST)))
    assert data.ssl.images.shape == (60000, 1, 28, 28) and len(data.test_eval) == 10000
    assert torch.bincount(data.ssl.targets).tolist() == [6000] * 10
    assert torch.bincount(data.test_eval.targets).tolist() == [1000] * 10
