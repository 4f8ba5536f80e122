"""Tiny files in the real on-disk formats, trained one step through torchvision's own loaders."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torchvision.datasets as tvd
from PIL import Image

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.datasets import build_data
from ssltheory.practice.engine.rundir import read_metrics
from ssltheory.practice.engine.train import train
from ssltheory.theory.checks import ConfigError

SMALL = dict(backbone="convnet", image_size=16, batch_size=8, epochs=1, max_steps=1, measure_every=1,
             probe_size=8, knn_k=5, proj_hidden=32, proj_dim=16)


@pytest.fixture
def skip_md5(monkeypatch):
    """torchvision checks the official archives' md5 sums; our tiny files have the right format, not those sums."""
    monkeypatch.setattr(tvd.STL10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *args, **kwargs: True)  # batches.meta


def write_stl10(root, n=12, rng=np.random.default_rng(0)):
    d = root / "stl10_binary"
    d.mkdir(parents=True)
    for split, m in (("train", n), ("test", n)):
        rng.integers(0, 256, (m, 3, 96, 96), dtype=np.uint8).tofile(d / f"{split}_X.bin")
        (rng.integers(0, 10, m, dtype=np.uint8) + 1).tofile(d / f"{split}_y.bin")
    rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(d / "unlabeled_X.bin")


def write_cifar10(root, n=10, rng=np.random.default_rng(0)):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def write_folder(root, rng=np.random.default_rng(0)):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")


@pytest.mark.parametrize("dataset,writer,n_ssl", [("stl10", write_stl10, 24), ("cifar10", write_cifar10, 50),
                                                   ("folder", write_folder, 12)])
def test_one_training_step_through_each_format(dataset, writer, n_ssl, tmp_path, skip_md5):
    data_dir = tmp_path / "data"
    writer(data_dir)
    cfg = TrainConfig(dataset=dataset, data_dir=str(data_dir), **SMALL)
    bundle = build_data(cfg)
    assert len(bundle.ssl) == n_ssl
    (v1, v2), _ = bundle.ssl[0]
    assert v1.shape == v2.shape == (3, 16, 16)
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 1
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert any("probe_auc" in r for r in recs) and any("knn_acc" in r for r in recs)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["dataset"] == dataset


@pytest.mark.parametrize("dataset,needle", [("stl10", "stl10_binary"), ("cifar10", "cifar-10-batches-py"),
                                            ("imagenet", "train"), ("folder", "ImageFolder")])
def test_missing_dataset_names_the_files_expected(dataset, needle, tmp_path):
    with pytest.raises(ConfigError, match=needle) as e:
        build_data(TrainConfig(dataset=dataset, data_dir=str(tmp_path / "nothing")))
    assert "\n" not in str(e.value)


def test_a_moved_run_is_probed_and_forecast_with_data_dir(tmp_path):
    """A run whose dataset moved (another machine): probe and forecast read it from --data-dir; without it the error
    names the run's own, now missing, folder in one line."""
    import shutil

    from ssltheory.cli.main import main

    data_dir = tmp_path / "data"
    write_folder(data_dir)
    runs = [tmp_path / f"run{k}" for k in range(3)]
    for k, run in enumerate(runs):
        train(TrainConfig(dataset="folder", data_dir=str(data_dir), seed=k, **SMALL), run)
    moved = tmp_path / "elsewhere"
    shutil.move(data_dir, moved)
    with pytest.raises(SystemExit) as e:
        main(["probe", str(runs[0]), "--epochs", "1", "--device", "cpu"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["probe", str(runs[0]), "--epochs", "1", "--device", "cpu", "--data-dir", str(moved)])
    assert e.value.code == 0
    assert 0.0 <= json.loads((runs[0] / "probe.json").read_text())["test_acc"] <= 1.0
    with pytest.raises(SystemExit) as e:
        main(["forecast", *map(str, runs), "--probe-epochs", "1", "--device", "cpu", "--data-dir", str(moved),
              "--out", str(tmp_path / "fc")])
    assert e.value.code == 0 and len(json.loads((tmp_path / "fc" / "forecast.json").read_text())["runs"]) == 3
