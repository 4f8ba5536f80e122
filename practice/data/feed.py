"""Where the training batches come from: two paths that yield the same global batches of views.

Each batch is a tuple of views, each (B_rank, C, size, size): (x1, x2) of the two views, or with ``--multi-crop
NxSIZE`` (x1, x2, l1, ..., lN), the two global views then N local ones (B_rank, C, SIZE, SIZE)
(:func:`.augment.view_set`); so ``x1, x2, *locals = views`` on either path.

- ``loader``: a torch DataLoader over the dataset with the per-image torchvision pipeline (workers, pinned memory,
  persistent workers); for ImageNet, folders and anything that does not fit in memory.
- ``device``: the whole dataset held on the device (uint8 for CIFAR-10 / STL-10), indexed and augmented a batch at
  a time by :mod:`.batch_augment`, whose parameters come from one CPU generator checkpointed with the run; for the
  synthetic Gaussian data, fresh draws a batch at a time (:class:`SyntheticFeed`).

Both follow the same global order, the data schedule's (:mod:`.schedule`; by default a permutation fixed by (seed,
epoch)); ``--batch-size`` is the global batch, and on a DDP run each rank takes its contiguous slice of every global
batch (:meth:`Dist.shard`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssltheory.practice.data.augment import view_set
from ssltheory.practice.data.batch_augment import BatchViews
from ssltheory.practice.data.registry import DATASETS
from ssltheory.practice.data.schedule import Schedule
from ssltheory.practice.engine.distributed import Dist

if TYPE_CHECKING:
    from ssltheory.practice.config import TrainConfig


def rank_order(order: torch.Tensor, batch: int, start_batch: int, d: Dist) -> torch.Tensor:
    """This rank's items, batch by batch, from global batch ``start_batch`` on (whole batches only)."""
    steps = len(order) // batch
    batches = order[: steps * batch].view(steps, batch)[start_batch:]
    return batches[:, d.shard(batch)].reshape(-1)


class RankSampler(Sampler[int]):
    """The items of :func:`rank_order` for the epoch set by :meth:`set_epoch` (one sampler for the whole run, so
    that persistent DataLoader workers survive from epoch to epoch)."""

    def __init__(self, schedule: Schedule, d: Dist) -> None:
        self.schedule, self.d = schedule, d
        self.items: list[int] = []

    def set_epoch(self, epoch: int, start_batch: int) -> None:
        order = self.schedule.order(epoch)
        self.items = rank_order(order, self.schedule.batch, start_batch, self.d).tolist()

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class LoaderFeed:
    """Batches from a DataLoader over ``ds`` (items ((v1, v2, *locals), label), e.g. :class:`.augment.TwoViews`'s),
    moved to ``device``."""

    def __init__(self, cfg: TrainConfig, ds: Dataset, device: torch.device, d: Dist, schedule: Schedule) -> None:
        self.device = device
        self.sampler = RankSampler(schedule, d)
        self.loader = DataLoader(ds, batch_size=cfg.batch_size // d.world, sampler=self.sampler, drop_last=True,
                                 num_workers=cfg.workers, pin_memory=device.type == "cuda",
                                 persistent_workers=cfg.workers > 0,
                                 generator=torch.Generator().manual_seed(cfg.seed * 7919))

    def epoch(self, epoch: int, start_batch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """This rank's batches of ``epoch`` from global batch ``start_batch`` on: tuples of views (module doc)."""
        self.sampler.set_epoch(epoch, start_batch)
        for views, _ in self.loader:
            yield tuple(v.to(self.device, non_blocking=True) for v in views)

    def prefetch(self) -> None:
        """Nothing to do: the DataLoader's workers make batches ahead on their own."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


_NOT_MADE = object()  # DeviceFeed: no batch made ahead yet


def in_memory_images(ds: Dataset) -> torch.Tensor:
    """(N, C, H, W) images of an in-memory dataset, as stored: ``images`` of the datasets held as tensors (digits'
    float in [0, 1], the MNIST family's uint8), else torchvision's ``data`` (uint8: CIFAR is NHWC, STL-10 and SVHN
    NCHW)."""
    data = getattr(ds, "images", None)
    if data is not None:  # DigitsDataset, TensorImages
        return data
    arr = torch.as_tensor(ds.data)
    return arr.permute(0, 3, 1, 2).contiguous() if arr.shape[-1] == 3 else arr  # CIFAR-10 is NHWC, STL-10 NCHW


class DeviceFeed:
    """Batches indexed from the dataset held on ``device`` and augmented there, all views of a global batch (the
    locals of multi-crop included, after the two global views) drawn at once from one generator (so every rank draws
    the same numbers and keeps its slice, and the checkpointed generator state covers every view).

    One batch is made ahead, on CUDA on a side stream. The consumer says when with :meth:`prefetch`: once its step's
    device work is queued and before anything in the step waits for the device (DirectPred's eigendecomposition
    with ``--directpred-solver eigh``), so that the host's share of batch k + 1 (drawing its parameters, queueing
    its kernels) overlaps the device's work on batch k instead of leaving the device idle after the wait. A consumer
    that never calls it gets the batch made when it asks for it. The checkpointed generator state is the one before
    the batch made ahead, so a resume draws it again."""

    def __init__(self, cfg: TrainConfig, ds: Dataset, device: torch.device, d: Dist, schedule: Schedule) -> None:
        self.cfg, self.d, self.device, self.schedule = cfg, d, device, schedule
        self.images = in_memory_images(ds).to(device)
        self.aug = BatchViews(view_set(cfg.dataset, cfg.resolved_image_size, cfg.multi_crop), seed=cfg.seed * 31 + 17)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._batches_left: Iterator | None = None  # the epoch being served
        self._ahead: tuple | None | object = _NOT_MADE  # the batch made ahead (None: the epoch has no more)
        self.state: torch.Tensor | None = None  # the generator before the batch made ahead (None: none is)

    def __len__(self) -> int:
        return len(self.images)

    def _batches(self, epoch: int, start_batch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        B, (H, W) = self.cfg.batch_size, self.images.shape[-2:]
        mine = self.d.shard(B)
        idx = rank_order(self.schedule.order(epoch), B, start_batch, self.d)
        idx = idx.to(self.device)  # once per epoch
        per = B // self.d.world
        for k in range(len(idx) // per):
            params = tuple({key: v[mine] for key, v in p.items()} for p in self.aug.params(B, H, W))
            yield self.aug(self.images[idx[k * per:(k + 1) * per]], params)

    def prefetch(self) -> None:
        """Make the next batch now (on CUDA its kernels go to the side stream), unless it is made already."""
        if self._ahead is not _NOT_MADE or self._batches_left is None:
            return
        self.state = self.aug.generator.get_state()
        with torch.cuda.stream(self.stream) if self.stream is not None else nullcontext():
            self._ahead = next(self._batches_left, None)

    def epoch(self, epoch: int, start_batch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """This rank's batches of ``epoch`` from global batch ``start_batch`` on: tuples of views (module doc)."""
        self._batches_left, self._ahead, self.state = self._batches(epoch, start_batch), _NOT_MADE, None
        self.prefetch()
        while self._ahead is not None:
            cur, self._ahead, self.state = self._ahead, _NOT_MADE, None
            if self.stream is not None:
                main = torch.cuda.current_stream(self.device)
                main.wait_stream(self.stream)
                for t in cur:  # made on the side stream, used and freed on the main one
                    t.record_stream(main)
            yield cur
            self.prefetch()
        self._batches_left, self._ahead, self.state = None, _NOT_MADE, None

    def state_dict(self) -> dict:
        state = self.state if self.state is not None else self.aug.generator.get_state()
        return {"generator": state.clone()}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.aug.generator.set_state(state["generator"])


class SyntheticFeed:
    """The theory's Gaussian data (:class:`.datasets.SyntheticGaussian`) drawn a global batch at a time: x0 ~ N(0,
    I_n1),
    views x0 + sigma * noise, (B, n1) each, from one CPU generator checkpointed with the run (every rank draws the
    global batch and keeps its slice, so the numbers do not depend on the number of ranks). The schedule gives the
    number of steps only: every item is a fresh draw. Same distribution as the loader path, other numbers."""

    def __init__(self, cfg: TrainConfig, ds: Dataset, device: torch.device, d: Dist, schedule: Schedule) -> None:
        self.cfg, self.d, self.device, self.schedule = cfg, d, device, schedule
        self.dim, self.sigma = ds.dim, ds.sigma
        self.generator = torch.Generator().manual_seed(cfg.seed * 31 + 17)

    def epoch(self, epoch: int, start_batch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """This rank's batches of ``epoch`` from global batch ``start_batch`` on: (x1, x2), each (B_rank, n1)."""
        B, mine = self.cfg.batch_size, self.d.shard(self.cfg.batch_size)
        for _ in range(start_batch, self.schedule.steps_in_epoch(epoch)):
            x0, e1, e2 = torch.randn(3, B, self.dim, generator=self.generator)
            yield tuple((x0 + self.sigma * e)[mine].to(self.device) for e in (e1, e2))

    def prefetch(self) -> None:
        """Nothing to do: a batch is three draws."""

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state().clone()}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


def make_feed(cfg: TrainConfig, ds: Dataset, device: torch.device, d: Dist,
              schedule: Schedule) -> LoaderFeed | DeviceFeed | SyntheticFeed:
    """The data path ``cfg`` resolves to on ``device``, serving ``schedule``'s epochs."""
    if cfg.resolved_data_path(device.type) == "loader":
        return LoaderFeed(cfg, ds, device, d, schedule)
    return (SyntheticFeed if DATASETS[cfg.dataset].linear else DeviceFeed)(cfg, ds, device, d, schedule)
