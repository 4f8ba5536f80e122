"""The datasets, one registry entry each: everything the code asks of a dataset, in one place.

A :class:`DatasetSpec` says what a dataset is (channels, classes, native size, its normalisation and two-view
augmentation preset, how evaluation resizes it), how it is trained by default (backbone; the CIFAR stem follows from
the size, :func:`~ssltheory.practice.models.backbone`), whether the batched path can hold it in memory, and how to
get it: ``load(cfg)`` builds its splits (:class:`Splits`: the SSL set, the kNN bank / probe train split, the test
split) or raises the one-line :class:`ConfigError` that names the files expected and how to get them. ``train``,
``probe``, ``collapse``, ``forecast`` and ``experiment`` read this registry, and ``ssltheory train --help`` lists it;
a new dataset is one :func:`register_dataset` call (the entries are in :mod:`.datasets`).

The data settings every dataset shares (``DATASET``, ``--data-dir``, ``--download``, ``--image-size``, ``--workers``,
``--data-path``) are declared here; a dataset's own settings (the synthetic data's ``--sigma2``) with its entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ssltheory.practice.settings import Setting, declare, rule
from ssltheory.theory.checks import ConfigError

if TYPE_CHECKING:
    from torch.utils.data import Dataset


@dataclass
class Splits:
    """What a dataset gives a run: the SSL set (items ((v1, v2[, locals...]), label)), the evaluation splits (items
    (image, label)): the kNN bank and probe train split, and the test split; ``in_channels`` (the input width n1 for
    the synthetic data) and ``num_classes`` (0: no labels, no kNN)."""

    ssl: Dataset
    train_eval: Dataset
    test_eval: Dataset
    in_channels: int
    num_classes: int


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset. ``views(size)``: the (view 1, view 2) :class:`~.augment.AugSpec` of its augmentation preset at a
    resolution; ``eval_resize``: ``none`` (used as stored), ``resize`` (to size x size) or ``center-crop`` (resize
    to size x 256/224, centre crop: ImageNet's); ``load(cfg)``: its :class:`Splits` with the views of ``cfg``;
    ``files``: where its files come from (docs/training.md's datasets table); ``linear``: the theory's own data,
    trained by the linear model (``--backbone linear``) and plain gradient flow (no SGD momentum)."""

    name: str
    help: str
    channels: int
    classes: int
    size: int
    views: Callable[[int], tuple[Any, Any]]  # (view 1, view 2) AugSpec at a size
    load: Callable[[Any], Splits]
    files: str
    backbone: str = "resnet18"
    in_memory: bool = False
    eval_resize: str = "resize"
    download: bool = False
    linear: bool = False
    batched_on_cpu: bool = False
    settings: tuple[Setting, ...] = field(default=())


DATASETS: dict[str, DatasetSpec] = {}
"""Every dataset by name (``ssltheory train DATASET``)."""


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` (and declare its own settings) under its name, replacing one of the same name; returns it."""
    declare(*spec.settings)
    DATASETS[spec.name] = spec
    return spec


def dataset_of(cfg: Any) -> DatasetSpec:
    """The registry entry of a run's dataset."""
    return DATASETS[cfg.dataset]


def _in_memory() -> tuple[str, ...]:
    return tuple(n for n, s in DATASETS.items() if s.in_memory)


def _image_size(cfg: Any) -> int:
    return cfg.image_size or dataset_of(cfg).size


def _data_path(cfg: Any, device_type: str, world: int = 1) -> str:
    """``device`` (the whole dataset held on the device, batched augmentation) on CUDA for the in-memory datasets,
    and on the CPU too for those marked ``batched_on_cpu`` (digits, the synthetic data, the 28 px sets: measured 1.9x
    faster than the DataLoader on 2 cores for digits); ``loader`` otherwise."""
    if cfg.data_path != "auto":
        return cfg.data_path
    spec = dataset_of(cfg)
    return "device" if spec.in_memory and (device_type == "cuda" or spec.batched_on_cpu) else "loader"


declare(
    Setting("dataset", "digits", "the dataset (ssltheory train --help lists them; docs/training.md: where each one's "
            "files come from)", "Data", str, choices=lambda: DATASETS, flag="DATASET"),
    Setting("data_dir", "data", "where the dataset's files are (fashion-mnist / mnist / kmnist: also the bare folder "
            "of the four idx .gz files, e.g. Debian's /usr/share/datasets/fashion-mnist)", "Data", str),
    Setting("download", False, "download the dataset into --data-dir if missing (torchvision's: cifar10, cifar100, "
            "svhn, stl10, mnist, kmnist, fashion-mnist)", "Data", bool),
    Setting("image_size", 0, "input size in px [0: the dataset's own: 8 digits, 28 the MNIST family, 32 cifar / svhn, "
            "96 stl10, 224 otherwise]", "Data", int, low=0, high=4096, resolve=_image_size),
    Setting("workers", 0, "DataLoader worker processes (--data-path loader)", "Data", int, low=0, high=256),
    Setting("data_path", "auto", "loader (DataLoader, per-image torchvision) | device (dataset held on the device, "
            "batched augmentation; the in-memory datasets; synthetic: drawn a batch at a time) [auto: device on CUDA, "
            "and on the CPU for digits, synthetic and the 28 px sets, 1.9x faster there]", "Data", str,
            choices=("auto", "loader", "device"), resolve=_data_path, device=True),
)


@rule
def _check_data_path(cfg: Any) -> None:
    if cfg.data_path == "device" and not dataset_of(cfg).in_memory:
        raise ConfigError(f"--data-path device with DATASET {cfg.dataset} is not accepted: expected one of "
                          f"{', '.join(_in_memory())} (held whole in device memory), or --data-path loader")
    if cfg.download and not dataset_of(cfg).download:
        able = [n for n, s in DATASETS.items() if s.download]
        raise ConfigError(f"--download with DATASET {cfg.dataset} is not accepted: it is not downloaded by this tool; "
                          f"expected one of {', '.join(able)}, or its files under --data-dir")
