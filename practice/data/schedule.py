"""The data schedule: which items each epoch sees, in what order, and how many steps it has.

A schedule answers three questions for the feed, the loop, the lr schedule and resume:

- ``order(epoch)``: the global order of the items the epoch sees (a 1-D tensor of item indices); the epoch has
  ``len(order) // batch`` steps, whole batches only;
- ``steps_in_epoch(epoch)`` and ``epoch_start(epoch)``: the steps of one epoch and the global step at which it
  starts (epochs may differ in length);
- ``locate(step)``: the (epoch, position) of a global step, so that a resumed run starts mid-epoch where it stopped
  and the lr schedule and progress speak in epochs.

:class:`IID` is the default: every item once per epoch in a permutation fixed by (seed, epoch). The collapse study's
continual streams (``current``, ``accumulate``, ``last``; ``--data-fraction``) are :class:`Stream`, with the chunk
arithmetic of its official code (``get_incremental_dataloader`` of Li, Efros & Pathak's ``main_simsiam.py``;
``../shared/papers/collapse.md`` B2), and ``--hybrid-epoch`` wraps a stream in :class:`Hybrid`: the stream until that
epoch, IID after. Every epoch of these has ``n // batch`` steps (compute-matched), so the step arithmetic, the lr
schedule and resume are those of IID: through the library, ``train`` resumed at the switch with the stream's config
changed to ``data_schedule="iid"`` is the hybrid (tests/test_streams.py); the command's ``--resume`` keeps a run's
settings, so there the hybrid is ``--hybrid-epoch``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssltheory.practice.data.registry import DATASETS
from ssltheory.practice.settings import Setting, declare, rule
from ssltheory.theory.checks import ConfigError

STREAMS = ("current", "accumulate", "last")
"""The continual strategies of the official code (``--strategy``), besides ``iid``."""


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """A permutation of range(n) fixed by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


class Schedule:
    """Base class: subclasses define :meth:`order`; the step arithmetic is derived from it (and cached)."""

    name = ""  # the --data-schedule it was made for (set by make_schedule)

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

    def frozen(self, step: int) -> bool:
        """Whether the encoder's lr is 0 at 0-based step ``step`` (``--chunk-warmup-steps``; the predictor trains)."""
        return False

    def stream_at(self, epoch: int) -> str:
        """The schedule epoch ``epoch`` follows (a hybrid's changes at its switch)."""
        return self.name

    def note(self, step: int) -> dict:
        """What a run's start records of its data schedule: the stream in force at ``step`` (nothing for iid)."""
        return {} if self.name == "iid" else {"data_schedule": self.stream_at(self.locate(step)[0])}

    def switch_at(self, step: int) -> tuple[str, str] | None:
        """(the new stream, why) when global step ``step`` opens the epoch at which the stream changes, else None."""
        epoch, pos = self.locate(step)
        if pos == 0 and epoch > 0 and self.stream_at(epoch) != self.stream_at(epoch - 1):
            return self.stream_at(epoch), f"--hybrid-epoch {epoch}"
        return None


class FullEpochs(Schedule):
    """Base of the schedules whose every epoch has ``n // batch`` steps: the step arithmetic in closed form."""

    def steps_in_epoch(self, epoch: int) -> int:
        return self.n // self.batch

    def epoch_start(self, epoch: int) -> int:
        return epoch * self.steps_in_epoch(0)

    def locate(self, step: int) -> tuple[int, int]:
        return divmod(step, self.steps_in_epoch(0))

    def epoch_float(self, step: int) -> float:
        return step / self.steps_in_epoch(0)


class IID(FullEpochs):
    """Every item once per epoch, in a new permutation each epoch (the multi-epoch IID training of the papers)."""

    def order(self, epoch: int) -> torch.Tensor:
        return epoch_order(self.n, self.seed, epoch)


def stream_permutation(order: str, n: int, seed: int, labels: Callable[[], Any] | None = None) -> np.ndarray:
    """The stream's fixed order of the ``n`` items (``--stream-order``): ``random`` (a permutation fixed by the
    seed), ``class-incremental`` (class 0's items first, then class 1's, ..., each class in the random order's order;
    ``labels()`` gives the items' labels) or a ``.npy`` file holding a permutation of range(n)."""
    if order == "random":
        return np.random.RandomState(seed).permutation(n)
    if order == "class-incremental":
        y = labels() if labels is not None else None
        if y is None:
            raise ConfigError("--stream-order class-incremental needs the items' labels and this dataset has none: "
                              "expected --stream-order random or a .npy permutation")
        y = np.asarray(y)
        if len(y) != n or (y < 0).any():
            raise ConfigError(f"--stream-order class-incremental needs a label for every one of the {n} items "
                              f"({int((y < 0).sum())} are unlabelled, e.g. STL-10's unlabeled split): expected "
                              "--stream-order random or a .npy permutation")
        within = np.random.RandomState(seed).permutation(n)
        return within[np.argsort(y[within], kind="stable")]
    try:
        perm = np.load(Path(order), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--stream-order {order} cannot be read ({type(e).__name__}): expected random, "
                          "class-incremental or a .npy file of a permutation of the training items") from None
    if not isinstance(perm, np.ndarray):  # an .npz archive
        raise ConfigError(f"--stream-order {order} is an archive of arrays: expected a .npy file of one permutation "
                          "of the training items")
    if perm.shape != (n,) or perm.dtype.kind not in "iu" or not np.array_equal(np.sort(perm), np.arange(n)):
        what = (f"has shape {perm.shape}" if perm.shape != (n,) else
                f"holds {perm.dtype}" if perm.dtype.kind not in "iu" else "is not a permutation (repeats or gaps)")
        raise ConfigError(f"--stream-order {order} {what}: expected a permutation of range({n}), one index per "
                          "training item")
    return perm.astype(np.int64)


def last_fraction(cfg) -> Fraction:
    """The share of the data a ``last`` schedule trains on: ``data_fraction`` when below 1, else one chunk of the
    stream, c / E (``n_chunks`` chunks of the epochs of one round; all of it without chunks)."""
    if cfg.data_fraction < 1:
        return Fraction(repr(cfg.data_fraction))
    per_round = cfg.epochs // cfg.n_rounds
    return Fraction(per_round // (cfg.n_chunks or per_round), per_round)


class Stream(FullEpochs):
    """A continual stream over a fixed order ``perm`` of the items, in chunks (the official code's arithmetic).

    With E = epochs // n_rounds epochs a round and chunks of c = E // n_chunks epochs, epoch e is in chunk
    i = (e mod E) // c and sees ``current``: perm[N i c // E : N (i + 1) c // E]; ``accumulate``:
    perm[: N (i + 1) c // E]; ``last``: the last ceil(N p) items, p = ``data_fraction``, or c / E without one.
    Its N // B batches cycle through that chunk: permutations of it from ``RandomState(e + seed)``, each cut to
    whole batches, one after another (with ``repeat_batch`` r, each batch r times in a row), until it is full."""

    def __init__(self, strategy: str, cfg, n: int, labels: Callable[[], Any] | None = None) -> None:
        super().__init__(n, cfg.batch_size, cfg.seed)
        self.strategy, self.repeat, self.warmup = strategy, cfg.repeat_batch, cfg.chunk_warmup_steps
        self.per_round = cfg.epochs // cfg.n_rounds
        self.chunk = self.per_round // (cfg.n_chunks or self.per_round)  # epochs a chunk
        frac = last_fraction(cfg)
        self.last = -(-n * frac.numerator // frac.denominator)  # ceil(N p): the official -N c // E
        self.perm = stream_permutation(cfg.stream_order, n, cfg.seed, labels)
        smallest = min(len(self.items(e)) for e in range(0, self.per_round, self.chunk))
        if smallest < self.batch:
            raise ConfigError(_too_small(strategy, cfg, n, smallest))
        if self.warmup >= self.steps_in_epoch(0):
            raise ConfigError(f"--chunk-warmup-steps {self.warmup} freezes the encoder for a whole epoch of "
                              f"{self.steps_in_epoch(0)} steps: expected fewer")

    def items(self, epoch: int) -> np.ndarray:
        """The items of epoch ``epoch``'s chunk, in the stream's order."""
        if self.strategy == "last":
            return self.perm[self.n - self.last:]
        i = (epoch % self.per_round) // self.chunk
        hi = self.n * (i + 1) * self.chunk // self.per_round
        return self.perm[self.n * i * self.chunk // self.per_round: hi] if self.strategy == "current" else \
            self.perm[:hi]

    def order(self, epoch: int) -> torch.Tensor:
        items, B, need = self.items(epoch), self.batch, self.steps_in_epoch(epoch)
        rng = np.random.RandomState(epoch + self.seed)
        parts, done = [], 0
        while done < need:
            nxt = rng.permutation(items)[: len(items) - len(items) % B].reshape(-1, B)
            parts.append(np.repeat(nxt[:, None], self.repeat, axis=1).reshape(-1))  # each batch r times in a row
            done += self.repeat * len(nxt)
        return torch.from_numpy(np.concatenate(parts)[: B * need])

    def frozen(self, step: int) -> bool:
        """The first ``chunk_warmup_steps`` steps of every epoch but the first, as the official ``train``
        (``n_warmup_steps > 0 and epoch != 0``): with a chunk of several epochs, at each of its epochs' starts. (There
        the freeze acts only on parameter groups marked ``is_encoder``, which exist only with ``--fix-pred-lr``;
        here the online group is frozen either way.)"""
        epoch, pos = self.locate(step)
        return epoch > 0 and pos < self.warmup


def _too_small(strategy: str, cfg, n: int, smallest: int) -> str:
    """The one-line error for a stream whose smallest chunk (``smallest`` of ``n`` items) holds no whole batch,
    naming the settings the user gave (``--data-fraction``, or the strategy and how it is cut)."""
    B = cfg.batch_size
    if strategy == "last" and cfg.data_fraction < 1:
        need = math.ceil(1000 * B / n) / 1000
        return (f"--data-fraction {cfg.data_fraction:g} leaves {smallest} of the {n} training items, fewer than "
                f"--batch-size {B}: expected --data-fraction {need:g} or more, or --batch-size {smallest} or less")
    cut = (f"--n-chunks {cfg.n_chunks}" if cfg.n_chunks else
           f"one chunk per epoch of the {cfg.epochs // cfg.n_rounds} epochs of a round (--epochs {cfg.epochs}"
           + (f" / --n-rounds {cfg.n_rounds}" if cfg.n_rounds > 1 else "") + ")")
    fewer = "fewer --n-chunks" if cfg.n_chunks else "--n-chunks N for fewer, larger chunks"
    return (f"--data-schedule {strategy} cut into {cut} has chunks of {smallest} items, fewer than --batch-size "
            f"{B}: expected {fewer} or --batch-size {smallest} or less")


class Hybrid(FullEpochs):
    """``stream`` for the epochs before ``switch``, then ``iid`` (continual, then multi-epoch; the same steps)."""

    def __init__(self, stream: Schedule, iid: Schedule, switch: int) -> None:
        super().__init__(stream.n, stream.batch, stream.seed)
        self.stream, self.iid, self.switch = stream, iid, switch

    def order(self, epoch: int) -> torch.Tensor:
        return (self.stream if epoch < self.switch else self.iid).order(epoch)

    def frozen(self, step: int) -> bool:
        return self.locate(step)[0] < self.switch and self.stream.frozen(step)

    def stream_at(self, epoch: int) -> str:
        return (self.stream if epoch < self.switch else self.iid).stream_at(epoch)


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "iid": lambda cfg, n: IID(n, cfg.batch_size, cfg.seed),
    "current": lambda cfg, n, labels=None: Stream("current", cfg, n, labels),
    "accumulate": lambda cfg, n, labels=None: Stream("accumulate", cfg, n, labels),
    "last": lambda cfg, n, labels=None: Stream("last", cfg, n, labels),
}
"""Every data schedule by name (``--data-schedule``): a builder (cfg, number of items) -> :class:`Schedule`; the
streams' builders also take the items' labels (a callable, for ``--stream-order class-incremental``)."""


def make_schedule(cfg, n: int, labels: Callable[[], Any] | None = None) -> Schedule:
    """The schedule ``cfg`` asks for over a training set of ``n`` items: ``--data-schedule`` (``last`` for a
    ``--data-fraction`` below 1), inside a :class:`Hybrid` with ``--hybrid-epoch``. ``labels()``: the items' labels."""
    name = cfg.resolved_data_schedule
    schedule = SCHEDULES[name](cfg, n, labels) if name in STREAMS else SCHEDULES[name](cfg, n)
    schedule.name = name
    if cfg.hybrid_epoch:
        iid = SCHEDULES["iid"](cfg, n)
        iid.name = "iid"
        schedule = Hybrid(schedule, iid, cfg.hybrid_epoch)
        schedule.name = f"{name} then iid"
    return schedule


declare(
    Setting("data_schedule", "iid", "which items each epoch sees (iid: every item once per epoch, reshuffled; the "
            "continual streams of the collapse paper's code, each epoch N // batch steps cycling through its chunk: "
            "current (chunk i of the stream), accumulate (chunks 0 to i), last (the stream's last 1 / --n-chunks, or "
            "--data-fraction))", "Data", str, choices=lambda: SCHEDULES, resolve=lambda cfg: cfg.data_schedule),
    Setting("data_fraction", 1.0, "train on the LAST P of the stream's fixed order (--stream-order), each epoch still "
            "N // batch steps: the paper's compute-matched dataset size (the official --strategy last; below 1 the "
            "data schedule is last, and config.json says so) [1: all]", "Data", float, low=0.0, low_open=True,
            high=1.0),
    Setting("stream_order", "random", "the stream's fixed order of the items: random (a permutation fixed by --seed) "
            "| class-incremental (class by class) | PATH.npy (a permutation of the training items)", "Data", str),
    Setting("n_chunks", 0, "chunks a round of the stream is cut into; must divide --epochs / --n-rounds [0: one per "
            "epoch, the official default]", "Data", int, low=0, high=10**6),
    Setting("n_rounds", 1, "passes over the stream; must divide --epochs", "Data", int, low=1, high=10**6),
    Setting("repeat_batch", 1, "streams: each batch this many times in a row (the official --repeat_batch)", "Data",
            int, low=1, high=10**4),
    Setting("hybrid_epoch", 0, "the stream until this epoch, then iid under the same lr schedule (the paper's hybrid; "
            "0 < E < --epochs) [0: off]", "Data", int, low=0, high=10**6),
    Setting("chunk_warmup_steps", 0, "streams: the encoder's lr is 0 for the first N steps of every epoch but the "
            "first, while the predictor trains (the official --n_warmup_steps, per epoch: a chunk of several epochs "
            "is frozen at each epoch's start)", "Optimisation", int, low=0, high=10**9),
)


@rule
def _check_schedule(cfg: Any) -> None:
    """The data stream's settings: the fraction against the strategy (a fraction under ``iid`` is the stream's
    ``last`` part: stored so, and saved so in config.json), the chunk arithmetic, the order, the hybrid's switch."""
    if cfg.data_fraction < 1 and cfg.data_schedule not in ("iid", "last"):
        raise ConfigError(f"--data-fraction {cfg.data_fraction} with --data-schedule {cfg.data_schedule} is not "
                          "accepted: the fraction is the stream's last part (strategy last), while "
                          f"{cfg.data_schedule} moves through the stream; expected --data-schedule iid or last")
    if cfg.data_fraction < 1 and cfg.n_chunks:
        raise ConfigError(f"--data-fraction {cfg.data_fraction} with --n-chunks {cfg.n_chunks} is not accepted: both "
                          "set the size of the last part (1 / --n-chunks); expected one of them")
    if cfg.data_fraction < 1 and cfg.data_schedule == "iid":  # what runs: the stream's last part
        cfg.adjust("data_schedule", "last")
    name = cfg.data_schedule
    if name not in STREAMS:
        given = [f"{flag} {v}" for flag, v, off in (
            ("--n-chunks", cfg.n_chunks, 0), ("--n-rounds", cfg.n_rounds, 1),
            ("--repeat-batch", cfg.repeat_batch, 1), ("--chunk-warmup-steps", cfg.chunk_warmup_steps, 0),
            ("--stream-order", cfg.stream_order, "random"), ("--hybrid-epoch", cfg.hybrid_epoch, 0)) if v != off]
        if given:
            raise ConfigError(f"{', '.join(given)} with --data-schedule {name} is not accepted: only a stream has "
                              f"chunks; expected --data-schedule {' | '.join(STREAMS)} or --data-fraction")
        return
    if DATASETS[cfg.dataset].linear:
        raise ConfigError(f"--data-schedule {name} with DATASET {cfg.dataset} is not accepted: every item of it is a "
                          "fresh draw, so there is no stream to order; expected an image dataset")
    if cfg.epochs % cfg.n_rounds:
        raise ConfigError(f"--n-rounds {cfg.n_rounds} does not divide --epochs {cfg.epochs}: expected a divisor (each "
                          "round has --epochs / --n-rounds epochs)")
    per_round = cfg.epochs // cfg.n_rounds
    if cfg.n_chunks and per_round % cfg.n_chunks:
        raise ConfigError(f"--n-chunks {cfg.n_chunks} does not divide the {per_round} epochs of a round (--epochs "
                          f"{cfg.epochs} / --n-rounds {cfg.n_rounds}): expected a divisor of {per_round}, so every "
                          "chunk has the same whole number of epochs")
    if cfg.stream_order not in ("random", "class-incremental") and not Path(cfg.stream_order).is_file():
        raise ConfigError(f"--stream-order {cfg.stream_order} is not a file: expected random, class-incremental or a "
                          ".npy file of a permutation of the training items")
    if cfg.hybrid_epoch and cfg.hybrid_epoch >= cfg.epochs:
        raise ConfigError(f"--hybrid-epoch {cfg.hybrid_epoch} is out of range: expected 0 < E < --epochs "
                          f"{cfg.epochs} (the epoch at which the stream gives way to iid)")
