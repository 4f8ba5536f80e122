"""The training loop, for every method, predictor and data schedule; it measures the theory's quantities as it goes.

It calls the pieces through their interfaces only: the model and its step (:mod:`.step`), the data schedule and its
feed (:mod:`..data.schedule`, :mod:`..data.feed`), the live measurements (:mod:`..measure.live`) and the run folder
(:mod:`.rundir`). Every ``measure_every`` steps a record goes to ``metrics.jsonl``; every ``knn_every`` epochs a kNN
accuracy (and one at step 0, the random-init baseline). Checkpoints are atomic and hold the RNG state, the data position
and the length of ``metrics.jsonl``: a one-process run killed at any step resumes to the same numbers (not exactly with
loader workers, whose RNG is not saved, nor on several ranks, which share rank 0's RNG after a resume).
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.datasets import build_data, item_labels, probe_subset
from ssltheory.practice.data.feed import make_feed
from ssltheory.practice.data.schedule import make_schedule
from ssltheory.practice.engine.distributed import Dist, setup, teardown
from ssltheory.practice.engine.optim import make_optimizer, make_scheduler
from ssltheory.practice.engine.rundir import CHECKPOINT, CONFIG, METRICS, RunDir, rng_state, set_rng_state
from ssltheory.practice.engine.step import Model, build_model, optimizer_step, resolve_device, restore, training_state
from ssltheory.practice.measure.evaluate import knn_monitor
from ssltheory.practice.measure.live import LiveMeasurer
from ssltheory.practice.measure.quantities import CollapseWatch, linear_modes, probe_note
from ssltheory.theory.checks import ConfigError, RunError


class TrainingDiverged(RunError):
    """The loss became NaN or infinite; the message names the step and the checkpoint that was kept."""


@dataclass
class Progress:
    """What the loop reports to its caller after each step."""

    step: int
    total: int
    epoch: int
    loss: float
    images_per_s: float
    knn: float | None = None
    warning: str | None = None
    probe_auc: float | None = None  # the live collapse AUC of the latest measurement, on the probe subset (higher
    # = more collapsed; ``ssltheory collapse`` measures the whole train split)


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False, force: bool = False,
          on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Train ``cfg`` into ``run_dir`` (or continue it with ``resume``); returns the final summary dict.

    A new run refuses a folder that holds one unless ``force``. Raises :class:`TrainingDiverged` on a non-finite
    loss, leaving the last good checkpoint in place. Under ``torchrun`` every rank runs this; rank 0 alone writes
    files and reports progress (the others return an empty dict)."""
    d, device = setup(resolve_device(cfg.device))
    try:
        return _train(cfg, RunDir(run_dir), resume, force, on_progress if d.main else None, d, device)
    finally:
        teardown()


def _train(cfg: TrainConfig, folder: RunDir, resume: bool, force: bool, on_progress, d: Dist, device) -> dict:
    if cfg.batch_size % d.world:
        raise ConfigError(f"--batch-size {cfg.batch_size} does not split over {d.world} ranks: expected a multiple "
                          f"of {d.world} (the batch size is the global batch)")
    if cfg.cuda_graph == "on" and (device.type != "cuda" or d.world > 1):
        raise ConfigError(f"--cuda-graph on on {device.type} with {d.world} process(es) is not accepted: expected "
                          "one CUDA process (or --cuda-graph auto / off)")
    if not resume:
        folder.check_free(force)  # refuse an existing run before anything is loaded (every rank: it only reads)
    else:
        check_writable(folder)  # a read-only run: one line before anything is loaded, trained or changed
    data = build_data(cfg)
    schedule = make_schedule(cfg, len(data.ssl), labels=lambda: item_labels(data.ssl))
    if schedule.steps_in_epoch(0) == 0:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(data.ssl)} training images: "
                          f"expected at most {len(data.ssl)}")
    model = build_model(cfg, data.in_channels, device, d)
    feed = make_feed(cfg, data.ssl, device, d, schedule)
    opt = make_optimizer(cfg, model.online, model.predictor)
    sched = make_scheduler(cfg, opt, schedule)
    total = min(schedule.epoch_start(cfg.epochs), cfg.max_steps or np.iinfo(np.int64).max)
    probe = probe_subset(data.train_eval, cfg.probe_size, seed=cfg.seed)
    resolved = cfg.resolved(device, d.world) | probe_note(len(probe), model.online.backbone.dim)

    def knn() -> float | None:
        return knn_monitor(model.online.backbone, data.train_eval, data.test_eval, device, d, cfg.knn_k, cfg.knn_t,
                           data.num_classes) if data.num_classes > 1 else None

    step, losses, watch, knn0 = 0, [], CollapseWatch(cfg.collapse_window), None
    state = folder.resume_point() if resume else None  # before a cut in metrics.jsonl, or one line
    if resume and state is None:
        raise ConfigError(f"--resume {folder.path} has no checkpoint.pt: expected a run that saved one (at the end "
                          "of its first epoch or --checkpoint-every steps)")
    if state is not None:
        restore(state, model, opt, sched, feed)
        step, watch = state["step"], CollapseWatch(cfg.collapse_window, state.get("collapse_history"))
        losses = [torch.tensor(v, device=device) for v in state["pending_losses"]]
        if d.main:
            folder.resume_at(state["metrics_lines"])
            folder.record_start(resolved, step, cfg, **schedule.note(step))
        set_rng_state(state["rng"])
    else:
        if d.main:
            folder.start(cfg, resolved, force, **schedule.note(0))
        torch.manual_seed(cfg.seed + 1 + 1000 * d.rank)  # ranks draw different loader augmentations
        np.random.seed(cfg.seed + 1 + 1000 * d.rank)
        knn0 = knn()
        if knn0 is not None and d.main:
            folder.append({"step": 0, "epoch": 0, "knn_acc": knn0, "note": "random init"})
        if cfg.resolved_backbone == "linear" and d.main:  # the initial condition of the ODE, read off the weights
            folder.append({"step": 0, "epoch": 0, **_linear_modes(model), "note": "init"})
    if on_progress:
        warning = folder.note if state is not None else resolved["probe"].get("warning")
        on_progress(Progress(step, total, schedule.locate(step)[0], float("nan"), 0.0, knn=knn0, warning=warning))

    for module in model.modules().values():  # (a measurement switches the online net to eval and back)
        module.train()
    last_knn, cuda = None, device.type == "cuda"
    check_every = 10 if cuda else 1  # a finiteness check waits for the device: on CUDA every 10 steps
    live = LiveMeasurer(probe, device, d, background=cuda, linear=cfg.resolved_backbone == "linear")
    t_last, n_images, auc = time.perf_counter(), 0, [None]

    def drain(wait: bool) -> str | None:
        """Write the finished measurements (all with ``wait``); returns a collapse warning if one fired."""
        warning = None
        for rec in live.ready(wait):
            auc[0] = rec.get("probe_auc", auc[0])
            if text := watch.update(rec):
                rec["warning"] = warning = text
            if d.main:
                folder.append(rec)
        return warning

    try:
        while step < total:
            if d.main and (switch := schedule.switch_at(step)):
                folder.record_switch(step, *switch)
            for batch in feed.epoch(*schedule.locate(step)):
                try:
                    loss, views = optimizer_step(model, opt, sched, batch, cfg, step, total, feed.prefetch)
                except torch.linalg.LinAlgError:  # a predictor's eigh / solve on a non-finite F̂
                    _check_finite([torch.tensor(float("nan"))], step + 1, folder)
                step += 1
                losses.append(model.reduce(loss.detach()) / d.world)
                n_images += batch[0].shape[0] * d.world
                measure_due = step % cfg.measure_every == 0 or step == total
                epochs_done, end_of_epoch = schedule.locate(step)[0], schedule.ends_epoch(step)
                save_due = end_of_epoch or step == total or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
                if step % check_every == 0 or measure_due or save_due:
                    _check_finite(losses[-check_every:], step, folder)
                if measure_due:
                    mean_loss = torch.stack(losses).double().mean()
                    live.submit(model, views, mean_loss, {"step": step, "epoch": schedule.epoch_float(step),
                                                          "lr": opt.param_groups[0]["lr"],
                                                          **model.target.record(step, total)})
                    losses = []
                warning = drain(wait=save_due)
                knn_due = end_of_epoch and cfg.knn_every and epochs_done % cfg.knn_every == 0
                if knn_due or step == total:
                    last_knn = knn()
                    if d.main and last_knn is not None:
                        folder.append({"step": step, "epoch": schedule.epoch_float(step), "knn_acc": last_knn})
                if d.main and save_due:
                    folder.save_checkpoint({
                        **training_state(model, opt, sched, feed), "step": step, "collapse_history": watch.history,
                        "pending_losses": [float(v) for v in losses], "rng": rng_state(),
                        "metrics_lines": folder.count()})
                if on_progress and (step % check_every == 0 or step == total or warning):
                    rate = n_images / max(time.perf_counter() - t_last, 1e-9)
                    shown = float(losses[-1]) if losses else float(mean_loss)
                    on_progress(Progress(step, total, epochs_done, shown, rate, last_knn, warning, auc[0]))
                if step >= total:
                    break
    finally:
        live.close()
    return folder.finish(cfg) if d.main else {}


def check_writable(folder: RunDir) -> None:
    """A one-line :class:`ConfigError` unless a resume can write the run folder: it cuts ``metrics.jsonl`` back,
    appends to it, and replaces ``config.json`` and the checkpoints through renames in the folder.

    Probed by making and removing a temporary folder there (``os.access`` says yes to root on a folder it cannot
    write, e.g. on a read-only file system) and by ``os.access`` on ``metrics.jsonl``, which is appended to in place.
    """
    try:
        os.rmdir(tempfile.mkdtemp(dir=folder.path, prefix=".ssltheory-probe-"))
        metrics = folder.file(METRICS)
        if metrics.exists() and not os.access(metrics, os.W_OK):
            raise PermissionError(errno.EACCES, f"{METRICS} is read-only")
    except OSError as e:
        raise ConfigError(f"--resume {folder.path} is not writable ({e.strerror or e}): expected a run folder that "
                          f"can be written (a resume rewrites {METRICS}, {CONFIG} and {CHECKPOINT} there); make it "
                          "writable, or copy the run to a writable place and resume the copy") from None


def _check_finite(window: list[torch.Tensor], step: int, folder: RunDir) -> None:
    """Raise TrainingDiverged naming the first non-finite loss among the last len(window) steps (ending at
    ``step``, 1-based) and the checkpoint that is kept."""
    finite = torch.isfinite(torch.stack(window))
    if bool(finite.all()):
        return
    bad = int((~finite).nonzero()[0])
    saved = folder.load_checkpoint()
    where = f"step {saved['step']}" if saved else "none written yet"
    raise TrainingDiverged(f"loss is {float(window[bad])} at step {step - len(window) + bad + 1}: stopped; the last "
                           f"good checkpoint ({where}) is kept in {folder.path}")


def _linear_modes(model: Model) -> dict:
    """Exact modes (s_model, p_model, tau_model) of the linear model from its weights (X = I)."""
    W_a = model.target.network.backbone.weight if model.target.network is not None else None
    return linear_modes(model.online.backbone.weight, model.predictor.W_p(), W_a)
