"""The live measurement of a training run, kept off the training step's critical path.

A measurement at step k has two halves:

1. :func:`snapshot` (the training thread, at step k): queues on the device what depends on the model's state - the
   probe set's backbone features in eval mode, their projector outputs, this batch's f, F̂, W_p (and for the linear
   model its weights) - and copies them to host memory (pinned, without waiting, on CUDA) behind one event;
2. :func:`record` (anywhere, later): waits for that event and computes the record on the CPU in float64 - spectra,
   alignment and asymmetry (:func:`.quantities.predictor_metrics`; only for a linear W_p, none without a predictor),
   the collapse AUC of the probe subset's backbone and projector features (``probe_auc``, ``probe_k_eq``,
   ``probe_auc_projector``: ``probe_n`` images, not the whole split of ``ssltheory collapse``), the normalised std
   of f, the linear model's modes.

:class:`LiveMeasurer` runs half 2 in one background thread on CUDA, so the step only pays for queueing half 1, and
inline on the CPU (the same numbers, in the same order). Records come back in step order through :meth:`ready`;
the trainer drains them before every checkpoint, so ``metrics.jsonl`` and the checkpoint agree. The background
thread does its linear algebra on one core (:func:`one_thread`): with the default thread pools a record kept every
core busy (torch's SVDs on all of them, then numpy's idle OpenBLAS threads spinning) while the training thread needs
one to keep the GPU fed.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn
from torch.utils.data import Dataset

from ssltheory.practice.engine.distributed import Dist, all_gather_rows
from ssltheory.practice.measure.evaluate import held_items
from ssltheory.practice.measure.quantities import (
    AUC_NORMALISATION,
    collapse_auc,
    decorrelation,
    linear_modes,
    method_metrics,
    negative_cosine,
    normalized_std,
    positive_cosine,
    predictor_metrics,
)
from ssltheory.practice.methods.objectives import Views
from ssltheory.practice.settings import Setting, declare


def probe_tensor(probe: Dataset, device: torch.device, d: Dist) -> torch.Tensor:
    """This rank's share of the probe images (items rank, rank + world, ...), stacked (n_r, C, H, W) on ``device``
    once, so that a measurement reads them without a DataLoader."""
    positions = list(range(d.rank, len(probe), d.world))
    if not positions:
        return torch.zeros(0)
    held = held_items(probe, positions)
    if held is not None:  # held in memory: one batch
        base, index = held
        return base.take(index)[0].float().to(device)
    return torch.stack([torch.as_tensor(probe[i][0]) for i in positions]).float().to(device)


def _host(t: torch.Tensor | None) -> torch.Tensor | None:
    """A host copy of ``t`` as it is now in the stream order: pinned and not waited for on CUDA, a clone on CPU."""
    if t is None:
        return None
    t = t.detach()
    if not t.is_cuda:
        return t.clone()
    buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return buf.copy_(t, non_blocking=True)


@dataclass
class Snapshot:
    """Host copies of what one measurement reads (valid once ``event`` has completed)."""

    meta: dict
    tensors: dict[str, torch.Tensor | None] = field(default_factory=dict)
    event: torch.cuda.Event | None = None
    linear: bool = False
    objective: nn.Module | None = None  # a copy of the objective as it was at the step (its F, its queue)


@torch.no_grad()
def snapshot(model, probe_x: torch.Tensor, views: Views, loss: torch.Tensor, meta: dict, linear: bool = False,
             batch_size: int = 256) -> Snapshot:
    """Queue half 1 of a measurement of ``model`` (a :class:`..engine.step.Model`) at this point of the step.

    probe_x: this rank's probe images (n_r, C, H, W) on the model's device; views: the step's :class:`Views` (this
    rank's (B_r, d) features: f1, f2 for the positive- and negative-pair similarities and the decorrelation, all of
    them for the objective's own ``measure``, which gets a copy of the objective as it is now); loss: 0-d tensor,
    the mean loss since the last measurement; linear: the backbone is the theory's W (its modes are recorded too).
    Under DDP the features and f are gathered over ranks here (a collective), so every rank's record is the global
    one."""
    d = model.dist
    net, head = model.online.backbone, model.online.projector
    was = net.training, head.training
    net.eval()
    head.eval()
    feats = torch.cat([net(probe_x[i:i + batch_size]).float() for i in range(0, len(probe_x), batch_size)])
    feats = all_gather_rows(feats, d)
    proj = head(feats).float()
    net.train(was[0])
    head.train(was[1])
    tensors = {"feats": feats, "proj": proj, "loss": loss, "F": model.corr.F, "W_p": model.predictor.W_p()}
    for name in ("f1", "f2", "p1", "p2", "z1", "z2", "n1", "n2"):
        t = getattr(views, name)
        tensors["v_" + name] = None if t is None else all_gather_rows(t.detach().float(), d)
    objective = copy.deepcopy(model.objective)  # read later, in the background: as it is at this step
    if hasattr(objective, "rank"):
        objective.rank = 0  # it measures the gathered (global) views, as one process
    if linear:  # the linear model: its modes are read off the weights
        tensors["W"] = net.weight
        tensors["W_a"] = model.target.network.backbone.weight if model.target.network is not None else None
    snap = Snapshot(meta, {k: _host(v) for k, v in tensors.items()}, linear=linear, objective=objective)
    if feats.is_cuda:
        snap.event = torch.cuda.Event()
        snap.event.record()
    return snap


def record(snap: Snapshot) -> dict:
    """Half 2: the measurement record of a snapshot, on the CPU in float64 (waits for the snapshot's copies)."""
    if snap.event is not None:
        snap.event.synchronize()
    t = snap.tensors
    rec = predictor_metrics(t["F"], t["W_p"])
    c, proj = collapse_auc(t["feats"]), collapse_auc(t["proj"])
    f1, f2 = t["v_f1"], t["v_f2"]
    std = normalized_std(f1)
    rec.update(probe_auc=c["auc"], probe_k_eq=c["k_eq"], probe_auc_projector=proj["auc"], feature_std=std,
               feature_std_x_sqrt_d=std * f1.shape[1] ** 0.5, probe_n=int(t["feats"].shape[0]),
               feature_dim=int(t["feats"].shape[1]), auc_normalisation=AUC_NORMALISATION,
               positive_cosine=positive_cosine(f1, f2), negative_cosine=negative_cosine(f1),
               decorrelation=decorrelation(f1))
    if hasattr(snap.objective, "measure"):  # the method's own quantities (its F, balance, gradient cosines)
        views = Views(*(t["v_" + n] for n in ("p1", "p2", "f1", "f2", "z1", "z2", "n1", "n2")))
        rec.update(method_metrics(snap.objective.cpu().measure(views)))
    if snap.linear:
        rec.update(linear_modes(t["W"], t["W_p"], t["W_a"]))
    return {**rec, **snap.meta, "loss": float(t["loss"])}


@contextmanager
def one_thread() -> Iterator[None]:
    """The calling thread's CPU linear algebra on one core: torch's (its OpenMP and MKL settings are per thread;
    the number ``torch.get_num_threads`` reports is shared, and is put back on exit) and numpy's / scipy's OpenBLAS
    (a process-wide setting, through threadpoolctl: the training thread makes no BLAS calls on a CUDA run). Idle
    OpenBLAS threads spin for about 0.1 s after each call, so a default-threaded record kept every core busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _blas_controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(n)


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # (finding the loaded BLAS libraries takes a few ms: once)


def record_on_one_core(snap: Snapshot) -> dict:
    """:func:`record` with its linear algebra on one core (:func:`one_thread`; the background worker's)."""
    with one_thread():
        return record(snap)


class LiveMeasurer:
    """Measurements in step order: :meth:`submit` at the step, :meth:`ready` for the records that are done.

    ``background`` (CUDA runs): half 2 runs in one worker thread, on one core; otherwise inline, at :meth:`submit`."""

    def __init__(self, probe: Dataset, device: torch.device, d: Dist, background: bool, linear: bool = False) -> None:
        self.probe_x, self.linear = probe_tensor(probe, device, d), linear
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="live-measure") if background else None
        self.pending: deque[Future | dict] = deque()

    def submit(self, model, views: Views, loss: torch.Tensor, meta: dict) -> None:
        """Measure ``model`` now (``meta``: step, epoch, lr, ... copied into the record; views: the step's
        :class:`Views`)."""
        snap = snapshot(model, self.probe_x, views, loss, meta, self.linear)
        self.pending.append(self.pool.submit(record_on_one_core, snap) if self.pool else record(snap))

    def ready(self, wait: bool = False) -> list[dict]:
        """The finished records, oldest first (all of them with ``wait``)."""
        out = []
        while self.pending:
            head = self.pending[0]
            if isinstance(head, Future):
                if not (wait or head.done()):
                    break
                head = head.result()
            out.append(head)
            self.pending.popleft()
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


declare(
    Setting("measure_every", 50, "steps between measurements of F̂, W_p and the collapse metric", "Measurement", int,
            low=1),
    Setting("probe_size", 512, "images N of the fixed probe set of the collapse metric (warned when N < 4d)",
            "Measurement", int, low=2, high=10**6),
)
