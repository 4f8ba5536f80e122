"""Datasets through torchvision (and scikit-learn's bundled digits): the SSL set and the two evaluation splits.

| dataset | SSL images | kNN bank / probe train | test | files expected under ``--data-dir`` |
|---|---|---|---|---|
| digits | 1,297 train digits | the same | 500 held-out digits | none (bundled with scikit-learn) |
| stl10 | 'train+unlabeled' (105k) | 'train' (5k) | 'test' (8k) | stl10_binary/{train,test,unlabeled}_X.bin, ... |
| cifar10 | train (50k) | train | test (10k) | cifar-10-batches-py/data_batch_1..5, test_batch |
| imagenet | train/ | train/ | val/ | train/CLASS/*.JPEG, val/CLASS/*.JPEG |
| folder | train/ (or the folder itself) | the same | val/ (or the train images) | [train/]CLASS/*.png|jpg |
| synthetic | x0 ~ N(0, I_n1) drawn fresh per sample, views x0 + sigma * noise | 1,024 fixed x0 | 512 fixed x0 | none |

synthetic has no labels (``num_classes`` 0): no kNN, no probe.

A missing dataset raises :class:`~ssltheory.theory.checks.ConfigError` naming the files expected and how to get them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.augment import TwoViews, eval_transform
from ssltheory.theory.checks import ConfigError

DIGITS_TEST = 500

STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


class DigitsDataset(Dataset):
    """scikit-learn's 8x8 digits as (1, size, size) float tensors in [0, 1]; a fixed 1,297 / 500 train/test split.

    ``size`` > 8 upsamples the images once (bilinear), giving convolutions more than a 2 x 2 map to work on.
    """

    def __init__(self, split: str, transform=None, size: int = 8) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        perm = np.random.default_rng(0).permutation(len(d.target))
        idx = perm[DIGITS_TEST:] if split == "train" else perm[:DIGITS_TEST]
        self.images = torch.tensor(d.images[idx] / 16.0, dtype=torch.float32).unsqueeze(1)
        if size != 8:
            self.images = torch.nn.functional.interpolate(self.images, size=(size, size), mode="bilinear",
                                                          align_corners=False).clamp(0, 1)
        self.targets = torch.tensor(d.target[idx], dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = self.images[i]
        return (self.transform(img) if self.transform else img), int(self.targets[i])


class SyntheticGaussian(Dataset):
    """The theory's data: x0 ~ N(0, I_dim), views x_{1,2} = x0 + sigma * noise (Eq. 1 with X = I, X' = sigma^2 I).

    With ``views`` every item is a fresh draw from torch's global generator (infinite data, resumable through the
    checkpointed RNG state): ((x1, x2), 0). Without, ``n`` fixed x0 from ``seed``: (x0, 0), for measurements.
    """

    def __init__(self, n: int, dim: int, sigma2: float, views: bool, seed: int = 0) -> None:
        self.n, self.dim, self.sigma, self.views = n, dim, float(np.sqrt(sigma2)), views
        self.fixed = None if views else torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if self.fixed is not None:
            return self.fixed[i], 0
        x0 = torch.randn(self.dim)
        return (x0 + self.sigma * torch.randn(self.dim), x0 + self.sigma * torch.randn(self.dim)), 0


@dataclass
class DataBundle:
    """The SSL dataset (items: ((v1, v2), label), with multi-crop ((v1, v2, l1, ..., lN), label)) and the eval
    splits (items: (image, label))."""

    ssl: Dataset
    train_eval: Dataset
    test_eval: Dataset
    in_channels: int
    num_classes: int


def _require(root: Path, files: tuple[str, ...], what: str, how: str) -> None:
    missing = [f for f in files if not (root / f).exists()]
    if missing:
        raise ConfigError(f"{what} not found: expected {', '.join(str(root / f) for f in missing)}; {how}")


def _folder(root: Path, what: str):
    from torchvision.datasets import ImageFolder

    if not root.is_dir() or not any(p.is_dir() for p in root.iterdir()):
        raise ConfigError(f"{what} not found: expected class folders of images in {root} (ImageFolder layout "
                          f"{root}/CLASS/IMAGE.png)")
    return lambda transform: ImageFolder(str(root), transform=transform)


def build_data(cfg: TrainConfig) -> DataBundle:
    """Datasets for ``cfg`` with the paper's augmentations; raises ConfigError if files are missing."""
    size = cfg.resolved_image_size
    views = TwoViews(cfg.dataset, size, cfg.multi_crop)
    ev = eval_transform(cfg.dataset, size)
    root = Path(cfg.data_dir)
    if cfg.dataset == "synthetic":
        n1 = cfg.resolved_input_dim
        return DataBundle(SyntheticGaussian(cfg.synthetic_size, n1, cfg.sigma2, views=True),
                          SyntheticGaussian(1024, n1, cfg.sigma2, views=False, seed=cfg.seed + 101),
                          SyntheticGaussian(512, n1, cfg.sigma2, views=False, seed=cfg.seed + 202), n1, 0)
    if cfg.dataset == "digits":
        return DataBundle(DigitsDataset("train", views, size), DigitsDataset("train", None, size),
                          DigitsDataset("test", None, size), 1, 10)
    if cfg.dataset == "stl10":
        from torchvision.datasets import STL10

        if not cfg.download:
            _require(root / "stl10_binary", STL10_FILES, "STL-10",
                     f"pass --download to fetch it into {root}, or unpack stl10_binary.tar.gz there")
        ds = _download_guard(lambda: STL10(str(root), split="train+unlabeled", download=cfg.download,
                                           transform=views), "STL-10")
        return DataBundle(ds, STL10(str(root), split="train", transform=ev), STL10(str(root), split="test",
                                                                                    transform=ev), 3, 10)
    if cfg.dataset == "cifar10":
        from torchvision.datasets import CIFAR10

        if not cfg.download:
            _require(root / "cifar-10-batches-py", CIFAR10_FILES, "CIFAR-10",
                     f"pass --download to fetch it into {root}, or unpack cifar-10-python.tar.gz there")
        ds = _download_guard(lambda: CIFAR10(str(root), train=True, download=cfg.download, transform=views),
                             "CIFAR-10")
        return DataBundle(ds, CIFAR10(str(root), train=True, transform=ev), CIFAR10(str(root), train=False,
                                                                                     transform=ev), 3, 10)
    if cfg.dataset == "imagenet":
        make_train = _folder(root / "train", "ImageNet train split")
        make_val = _folder(root / "val", "ImageNet val split")
    else:  # folder
        train_root = root / "train" if (root / "train").is_dir() else root
        make_train = _folder(train_root, "image folder")
        make_val = _folder(root / "val", "image folder val split") if (root / "val").is_dir() else make_train
    ssl = make_train(views)
    return DataBundle(ssl, make_train(ev), make_val(ev), 3, len(ssl.classes))


DOWNLOAD_TIMEOUT = 60.0
"""Seconds a download may wait for the server's next bytes before it gives up (a server that accepts the connection
and never answers would otherwise hang the run with no output)."""


def _download_guard(make, what: str):
    """``make()`` with every socket timing out after :data:`DOWNLOAD_TIMEOUT` s of silence; a failure to load or
    download is one line."""
    import socket

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        return make()
    except TimeoutError:
        raise ConfigError(f"{what} could not be downloaded: the server sent nothing for {DOWNLOAD_TIMEOUT:g} s "
                          "(timed out); expected a connection to its host, or the files unpacked under --data-dir"
                          ) from None
    except (RuntimeError, OSError) as e:  # torchvision: "Dataset not found or corrupted" / no network
        raise ConfigError(f"{what} could not be loaded or downloaded ({' '.join(str(e).split())})") from None
    finally:
        socket.setdefaulttimeout(old)


def item_labels(ds: Dataset) -> np.ndarray | None:
    """The class label of every item of ``ds`` without loading an image (digits, CIFAR-10 and ImageFolder's
    ``targets``, STL-10's ``labels``, -1 for its unlabeled split); None when it has none (synthetic)."""
    for name in ("targets", "labels"):
        y = getattr(ds, name, None)
        if y is not None:
            return np.asarray(y, dtype=np.int64)
    return None


def probe_subset(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """A fixed random subset of ``n`` images (all if fewer) for the collapse metric."""
    m = len(ds)
    idx = np.sort(np.random.default_rng(seed).permutation(m)[: min(n, m)])
    return Subset(ds, idx.tolist())
