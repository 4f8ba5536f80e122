"""The datasets, one registry entry each (:mod:`.registry`), with what loads them: the SSL set and the two
evaluation splits.

| dataset | SSL images | kNN bank / probe train | test | files under ``--data-dir`` |
|---|---|---|---|---|
| digits | 1,297 train digits | the same | 500 held-out digits | none (bundled with scikit-learn) |
| fashion-mnist, mnist, kmnist | train (60k) | train | test (10k) | four ``*-idx?-ubyte[.gz]``, bare or ``NAME/raw/`` |
| cifar10, cifar100 | train (50k) | train | test (10k) | torchvision's ``cifar-10-batches-py/``, ``cifar-100-python/`` |
| svhn | train (73k) | train | test (26k) | torchvision's ``train_32x32.mat``, ``test_32x32.mat`` |
| stl10 | 'train+unlabeled' (105k) | 'train' (5k) | 'test' (8k) | stl10_binary/{train,test,unlabeled}_X.bin, ... |
| imagenet | train/ | train/ | val/ | train/CLASS/*.JPEG, val/CLASS/*.JPEG |
| folder | train/ (or the folder itself) | the same | val/ (or the train images) | [train/]CLASS/*.png|jpg |
| synthetic | x0 ~ N(0, I_n1) drawn fresh per sample, views x0 + sigma * noise | 1,024 fixed x0 | 512 fixed x0 | none |

synthetic has no labels (``num_classes`` 0): no kNN, no probe. The in-memory sets are :class:`TensorImages`
(uint8 or float images (N, C, H, W) held whole), which the batched path reads without a per-image step.

A missing dataset raises :class:`~ssltheory.theory.checks.ConfigError` naming the files expected and how to get them.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ssltheory.practice.data.augment import (
    CIFAR_MEAN,
    CIFAR_STD,
    TwoViews,
    cifar_views,
    digits_views,
    eval_transform,
    grey_views,
    imagenet_views,
    stl10_views,
)
from ssltheory.practice.data.registry import DATASETS, DatasetSpec, Splits, register_dataset
from ssltheory.practice.settings import Setting
from ssltheory.theory.checks import ConfigError

if TYPE_CHECKING:
    from ssltheory.practice.config import TrainConfig

DataBundle = Splits  # (the name a dataset's splits had before the registry)

DIGITS_TEST = 500

STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


class TensorImages(Dataset):
    """Images held whole, ``images`` (N, C, H, W) uint8 (or float in [0, 1]) and ``targets`` (N,) int64, each item
    ``(transform(image), label)`` with the image as a tensor (torchvision v2 transforms take it as it is).

    ``deterministic``: the transform draws nothing (an evaluation view, or none), so it may be applied to a whole
    batch at once: :meth:`take` gives many items without a per-image step (the kNN bank of 60,000 images, the probe
    set, the collapse metric's whole split)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform=None, deterministic: bool = False
                 ) -> None:
        self.images, self.targets, self.transform = images, targets, transform
        self.deterministic = deterministic or transform is None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = self.images[i]
        return (self.transform(img) if self.transform else img), int(self.targets[i])

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``idx`` (n,) at once: (transformed images (n, C, H', W'), labels (n,)); deterministic sets only."""
        if not self.deterministic:
            raise ValueError("take() needs a deterministic transform: an augmenting one draws per image")
        x = self.images[idx]
        return (self.transform(x) if self.transform else x), self.targets[idx]


class DigitsDataset(TensorImages):
    """scikit-learn's 8x8 digits as (1, size, size) float tensors in [0, 1]; a fixed 1,297 / 500 train/test split.

    ``size`` > 8 upsamples the images once (bilinear), giving convolutions more than a 2 x 2 map to work on.
    """

    def __init__(self, split: str, transform=None, size: int = 8) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        perm = np.random.default_rng(0).permutation(len(d.target))
        idx = perm[DIGITS_TEST:] if split == "train" else perm[:DIGITS_TEST]
        self.images = torch.tensor(d.images[idx] / 16.0, dtype=torch.float32).unsqueeze(1)  # (no super().__init__:
        # the images are made here)
        if size != 8:
            self.images = torch.nn.functional.interpolate(self.images, size=(size, size), mode="bilinear",
                                                          align_corners=False).clamp(0, 1)
        self.targets = torch.tensor(d.target[idx], dtype=torch.long)
        self.transform, self.deterministic = transform, transform is None


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


def build_data(cfg: TrainConfig) -> Splits:
    """The splits of ``cfg``'s dataset with the paper's augmentations (its registry entry's ``load``); raises a
    one-line ConfigError if its files are missing."""
    return DATASETS[cfg.dataset].load(cfg)


def _views(cfg: TrainConfig) -> TwoViews:
    return TwoViews(cfg.dataset, cfg.resolved_image_size, cfg.multi_crop)


def _eval(cfg: TrainConfig):
    return eval_transform(cfg.dataset, cfg.resolved_image_size)


def _load_synthetic(cfg: TrainConfig) -> Splits:
    n1 = cfg.resolved_input_dim
    return Splits(SyntheticGaussian(cfg.synthetic_size, n1, cfg.sigma2, views=True),
                  SyntheticGaussian(1024, n1, cfg.sigma2, views=False, seed=cfg.seed + 101),
                  SyntheticGaussian(512, n1, cfg.sigma2, views=False, seed=cfg.seed + 202), n1, 0)


def _load_digits(cfg: TrainConfig) -> Splits:
    size = cfg.resolved_image_size
    return Splits(DigitsDataset("train", _views(cfg), size), DigitsDataset("train", None, size),
                  DigitsDataset("test", None, size), 1, 10)


def _load_stl10(cfg: TrainConfig) -> Splits:
    from torchvision.datasets import STL10

    root = Path(cfg.data_dir)
    if not cfg.download:
        _require(root / "stl10_binary", STL10_FILES, "STL-10",
                 f"pass --download to fetch it into {root}, or unpack stl10_binary.tar.gz there")
    ds = _download_guard(lambda: STL10(str(root), split="train+unlabeled", download=cfg.download,
                                       transform=_views(cfg)), "STL-10")
    ev = _eval(cfg)
    return Splits(ds, STL10(str(root), split="train", transform=ev), STL10(str(root), split="test", transform=ev),
                  3, 10)


def _torchvision_set(cls_name: str, what: str, folder: str, archive: str, classes: int, split_kw: str = "train",
                     files: tuple[str, ...] = ()):
    """The loader of a torchvision set with a train / test split (CIFAR-10 / -100: ``train=True``; SVHN:
    ``split="train"``), found in ``--data-dir/folder`` (its ``files``) or fetched with ``--download``."""
    def load(cfg: TrainConfig) -> Splits:
        import torchvision.datasets as tvd

        cls, root = getattr(tvd, cls_name), Path(cfg.data_dir)
        if not cfg.download:
            _require(root / folder if files else root, files or (folder,), what,
                     f"pass --download to fetch it into {root}, or unpack {archive} there")

        def make(train: bool, transform, download: bool = False):
            split = {"train": train} if split_kw == "train" else {"split": "train" if train else "test"}
            return cls(str(root), download=download, transform=transform, **split)

        ds = _download_guard(lambda: make(True, _views(cfg), cfg.download), what)
        if split_kw != "train":
            _download_guard(lambda: make(False, None, cfg.download), what)
        ev = _eval(cfg)
        return Splits(ds, make(True, ev), make(False, ev), 3, classes)
    return load


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
"""The MNIST family's four files (each also as ``.gz``)."""


def read_idx(path: Path) -> np.ndarray:
    """An idx file (the MNIST format: a big-endian header of magic and sizes, then uint8 data), gzipped or not:
    (N, 28, 28) images or (N,) labels as uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 8:
        raise ConfigError(f"{path} is not an idx file of bytes: expected the MNIST format (magic 0x0000080N)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ConfigError(f"{path} holds {body.size} bytes for a {shape} array: expected a whole file (cut short?)")
    return body.reshape(shape)


def find_idx(root: Path, folder: str) -> Path | None:
    """Where the four idx files are: ``root`` itself (Debian's dataset packages), ``root/folder/raw`` (torchvision's
    layout) or ``root/raw``; each file plain or ``.gz``. None when no place holds all four."""
    for place in (root, root / folder / "raw", root / "raw"):
        if all((place / f).exists() or (place / f"{f}.gz").exists() for f in IDX_FILES):
            return place
    return None


def _idx_set(cls_name: str, folder: str, what: str, debian: str | None):
    """The loader of an MNIST-format set: the four idx files read whole (:func:`read_idx`) into
    :class:`TensorImages`, (N, 1, 28, 28) uint8; ``--download`` fetches them with torchvision's ``cls_name``."""
    def load(cfg: TrainConfig) -> Splits:
        root = Path(cfg.data_dir)
        place = find_idx(root, folder)
        if place is None and cfg.download:
            import torchvision.datasets as tvd

            _download_guard(lambda: getattr(tvd, cls_name)(str(root), train=True, download=True), what)
            place = find_idx(root, folder)
        if place is None:
            get = (f"apt-get install {debian} (then --data-dir /usr/share/datasets/{folder.lower()}), or " if debian
                   else "")
            raise ConfigError(f"{what} not found in {root}: expected the four idx files ({', '.join(IDX_FILES)}, "
                              f"plain or .gz) there or in {root / folder / 'raw'}; get them with {get}--download "
                              f"(torchvision's, into {root})")

        def arrays(stem: str) -> tuple[torch.Tensor, torch.Tensor]:
            def one(name: str) -> np.ndarray:
                plain = place / name
                return read_idx(plain if plain.exists() else place / f"{name}.gz")
            images, labels = one(f"{stem}-images-idx3-ubyte"), one(f"{stem}-labels-idx1-ubyte")
            if len(images) != len(labels):
                raise ConfigError(f"{what} in {place}: {len(images)} {stem} images but {len(labels)} labels: "
                                  "expected the four files of one release")
            return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))

        train, test = arrays("train"), arrays("t10k")
        ev = _eval(cfg)
        classes = int(train[1].max()) + 1
        return Splits(TensorImages(*train, _views(cfg)), TensorImages(*train, ev, deterministic=True),
                      TensorImages(*test, ev, deterministic=True), 1,
                      classes)
    return load


def _load_folder(cfg: TrainConfig, imagenet: bool) -> Splits:
    root = Path(cfg.data_dir)
    if imagenet:
        make_train = _folder(root / "train", "ImageNet train split")
        make_val = _folder(root / "val", "ImageNet val split")
    else:
        train_root = root / "train" if (root / "train").is_dir() else root
        make_train = _folder(train_root, "image folder")
        make_val = _folder(root / "val", "image folder val split") if (root / "val").is_dir() else make_train
    ssl = make_train(_views(cfg))
    ev = _eval(cfg)
    return Splits(ssl, make_train(ev), make_val(ev), 3, len(ssl.classes))


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


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
KMNIST_MEAN, KMNIST_STD = 0.1918, 0.3483
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)

_MNIST_FAMILY = dict(channels=1, classes=10, size=28, backbone="convnet", in_memory=True, eval_resize="resize",
                     download=True, batched_on_cpu=True)

register_dataset(DatasetSpec(
    "digits", "scikit-learn's 8 x 8 digits (1,297 train / 500 test), bundled: the offline default", 1, 10, 8,
    digits_views, _load_digits, "bundled with scikit-learn (no files)", backbone="convnet", in_memory=True,
    eval_resize="none", batched_on_cpu=True))
register_dataset(DatasetSpec(
    "fashion-mnist", "Zalando's Fashion-MNIST, 70,000 28 x 28 grey clothes (60k train / 10k test), 10 classes", **{
        **_MNIST_FAMILY, "views": grey_views(FASHION_MEAN, FASHION_STD, flip=True),
        "load": _idx_set("FashionMNIST", "FashionMNIST", "Fashion-MNIST", "dataset-fashion-mnist"),
        "files": "Debian: apt-get install dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, the four .gz); "
                 "or --download (torchvision, into DIR/FashionMNIST/raw)"}))
register_dataset(DatasetSpec(
    "mnist", "MNIST, 70,000 28 x 28 grey handwritten digits (60k / 10k), 10 classes", **{
        **_MNIST_FAMILY, "views": grey_views(MNIST_MEAN, MNIST_STD, flip=False, rotation=10.0),
        "load": _idx_set("MNIST", "MNIST", "MNIST", None),
        "files": "--download (torchvision, into DIR/MNIST/raw), or the four idx files in --data-dir"}))
register_dataset(DatasetSpec(
    "kmnist", "Kuzushiji-MNIST, 70,000 28 x 28 grey cursive Japanese characters (60k / 10k), 10 classes", **{
        **_MNIST_FAMILY, "views": grey_views(KMNIST_MEAN, KMNIST_STD, flip=False, rotation=10.0),
        "load": _idx_set("KMNIST", "KMNIST", "Kuzushiji-MNIST", None),
        "files": "--download (torchvision, into DIR/KMNIST/raw), or the four idx files in --data-dir"}))
register_dataset(DatasetSpec(
    "cifar10", "CIFAR-10, 60,000 32 x 32 colour images (50k / 10k), 10 classes", 3, 10, 32,
    cifar_views(CIFAR_MEAN, CIFAR_STD),
    _torchvision_set("CIFAR10", "CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz", 10, files=CIFAR10_FILES),
    "--download (torchvision), or cifar-10-python.tar.gz unpacked in --data-dir", in_memory=True, download=True))
register_dataset(DatasetSpec(
    "cifar100", "CIFAR-100, 60,000 32 x 32 colour images (50k / 10k), 100 classes", 3, 100, 32,
    cifar_views(CIFAR100_MEAN, CIFAR100_STD),
    _torchvision_set("CIFAR100", "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", 100),
    "--download (torchvision), or cifar-100-python.tar.gz unpacked in --data-dir", in_memory=True, download=True))
register_dataset(DatasetSpec(
    "svhn", "SVHN, 99,289 32 x 32 colour house-number digits (73k train / 26k test), 10 classes", 3, 10, 32,
    cifar_views(SVHN_MEAN, SVHN_STD),
    _torchvision_set("SVHN", "SVHN", "train_32x32.mat", "train_32x32.mat and test_32x32.mat", 10, split_kw="split"),
    "--download (torchvision: train_32x32.mat, test_32x32.mat in --data-dir)", in_memory=True, download=True))
register_dataset(DatasetSpec(
    "stl10", "STL-10, 96 x 96 colour: 105k unlabelled + train (5k) for SSL, test 8k, 10 classes", 3, 10, 96,
    stl10_views, _load_stl10, "--download (torchvision), or stl10_binary.tar.gz unpacked in --data-dir",
    in_memory=True, download=True))
register_dataset(DatasetSpec(
    "imagenet", "ImageNet (ILSVRC-2012) as class folders, 224 px", 3, 1000, 224, imagenet_views,
    lambda cfg: _load_folder(cfg, imagenet=True), "--data-dir with train/CLASS/*.JPEG and val/CLASS/*.JPEG",
    eval_resize="center-crop"))
register_dataset(DatasetSpec(
    "folder", "any class-folder images (ImageFolder), 224 px", 3, 0, 224, imagenet_views,
    lambda cfg: _load_folder(cfg, imagenet=False), "--data-dir with [train/]CLASS/*.png or .jpg (and val/ if any)",
    eval_resize="center-crop"))
register_dataset(DatasetSpec(
    "synthetic", "the theory's Gaussian data for --backbone linear: x0 ~ N(0, I_n1), views x0 + σ·noise", 0, 0, 1,
    digits_views, _load_synthetic, "none (drawn)", backbone="linear", in_memory=True, eval_resize="none",
    linear=True, batched_on_cpu=True, settings=(
        Setting("sigma2", 0.5, "synthetic: augmentation variance σ² of x = x0 + σ·noise", "Data", float, low=0.0,
                high=1e6),
        Setting("input_dim", 0, "synthetic: input width n1 [0: --proj-dim]", "Data", int, low=0, high=65536,
                resolve=lambda cfg: cfg.input_dim or cfg.proj_dim),
        Setting("synthetic_size", 8192, "synthetic: samples per epoch, each drawn fresh", "Data", int, low=2,
                high=10**8))))
