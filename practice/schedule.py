"""The data schedule: which items each epoch sees, in what order, and how many steps it has.

A schedule answers three questions for the feed, the loop, the lr schedule and resume:

- ``order(epoch)``: the global order of the items the epoch sees (a 1-D tensor of item indices); the epoch has
  ``len(order) // batch`` steps, whole batches only;
- ``steps_in_epoch(epoch)`` and ``epoch_start(epoch)``: the steps of one epoch and the global step at which it
  starts (epochs may differ in length);
- ``locate(step)``: the (epoch, position) of a global step, so that a resumed run starts mid-epoch where it stopped
  and the lr schedule and progress speak in epochs.

:class:`IID` is the default: every item once per epoch in a permutation fixed by (seed, epoch). Continual and hybrid
streams (the collapse study) are further subclasses of :class:`Schedule` and one :data:`SCHEDULES` line each.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

import torch


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of range(n) fixed by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class Schedule:
    """Base class: subclasses define :meth:`order`; the step arithmetic is derived from it (and cached)."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch, self.seed = n, batch, seed
        self._starts = [0]

    def order(self, epoch: int) -> torch.Tensor:
        """The global order of the items epoch ``epoch`` (0-based) sees."""
        raise NotImplementedError

    def steps_in_epoch(self, epoch: int) -> int:
        """Whole batches in epoch ``epoch``."""
        return len(self.order(epoch)) // self.batch

    def epoch_start(self, epoch: int) -> int:
        """The global step at which epoch ``epoch`` starts (the total steps of the epochs before it)."""
        while len(self._starts) <= epoch:
            e = len(self._starts) - 1
            self._starts.append(self._starts[-1] + self.steps_in_epoch(e))
        return self._starts[epoch]

    def locate(self, step: int) -> tuple[int, int]:
        """(epoch, position in it) of global step ``step`` (0-based); a step at an epoch's end is the next one's 0."""
        epoch = max(bisect.bisect_right(self._starts, step) - 1, 0)
        while self.epoch_start(epoch + 1) <= step:
            epoch += 1
        return epoch, step - self.epoch_start(epoch)

    def epoch_float(self, step: int) -> float:
        """Epochs done at global step ``step``, with the current epoch's fraction (for records and plots)."""
        epoch, pos = self.locate(step)
        return epoch + pos / max(self.steps_in_epoch(epoch), 1)

    def ends_epoch(self, step: int) -> bool:
        """Whether global step ``step`` (1-based count of steps done) closes an epoch."""
        return step > 0 and self.locate(step)[1] == 0


class IID(Schedule):
    """Every item once per epoch, in a new permutation each epoch (the multi-epoch IID training of the papers)."""

    def order(self, epoch: int) -> torch.Tensor:
        return epoch_order(self.n, self.seed, epoch)

    def steps_in_epoch(self, epoch: int) -> int:
        return self.n // self.batch

    def epoch_start(self, epoch: int) -> int:
        return epoch * self.steps_in_epoch(0)

    def locate(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_in_epoch(0))

    def epoch_float(self, step: int) -> float:
        return step / self.steps_in_epoch(0)


SCHEDULES: dict[str, Callable[[Any, int], Schedule]] = {
    "iid": lambda cfg, n: IID(n, cfg.batch_size, cfg.seed),
}
"""Every data schedule by name (``--data-schedule``): a builder (cfg, number of items) -> :class:`Schedule`."""


def make_schedule(cfg, n: int) -> Schedule:
    """The schedule ``cfg.data_schedule`` over a training set of ``n`` items."""
    return SCHEDULES[cfg.data_schedule](cfg, n)
