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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.datasets import build_data, item_labels, probe_subset
from ssltheory.practice.data.feed import make_feed
from ssltheory.practice.data.registry import Splits
from ssltheory.practice.data.schedule import Schedule, make_schedule
from ssltheory.practice.engine.distributed import Dist, setup, teardown
from ssltheory.practice.engine.optim import make_optimizer, make_scheduler
from ssltheory.practice.engine.rundir import CHECKPOINT, CONFIG, FIGURE, METRICS, RunDir, rng_state, set_rng_state
from ssltheory.practice.engine.step import Model, build_model, optimizer_step, resolve_device, restore, training_state
from ssltheory.practice.measure.evaluate import knn_monitor
from ssltheory.practice.measure.live import LiveMeasurer
from ssltheory.practice.measure.quantities import CollapseWatch, linear_modes, probe_note
from ssltheory.practice.report.loggers import Loggers, open_loggers, require
from ssltheory.practice.report.plots import save_run_figure
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
    run = Run.build(cfg, folder, d, device, resume, force)
    step = run.resume() if resume else run.start(force)
    run.report_start(step, on_progress)
    run.model.train_mode()
    try:
        while step < run.total:
            run.note_switch(step)
            for batch in run.feed.epoch(*run.schedule.locate(step)):
                loss, views = run.step(batch, step)
                step += 1
                warning = run.after_step(step, loss, views, batch[0].shape[0])
                run.report(step, warning, on_progress)
                if step >= run.total:
                    break
    except BaseException:
        run.loggers.close(failed=True)
        raise
    finally:
        run.live.close()
    if not d.main:
        return {}
    with run.loggers:  # closed when the figures are logged (as failed on an error)
        summary, records = folder.finish()
        save_run_figure(cfg, records, folder.file(FIGURE))
        run.loggers.figures(step, sorted(folder.path.glob("*.png")))
    return summary


@dataclass
class Run:
    """The pieces of one training run and what the loop does with them between steps. Rank 0 (``d.main``) alone
    writes the run folder; every rank trains, measures and evaluates (the collectives need all of them)."""

    cfg: TrainConfig
    folder: RunDir
    d: Dist
    device: torch.device
    data: Splits
    schedule: Schedule
    model: Model
    feed: Any
    opt: torch.optim.Optimizer
    sched: Any
    total: int
    live: LiveMeasurer
    resolved: dict
    watch: CollapseWatch
    losses: list[torch.Tensor] = field(default_factory=list)  # the steps' losses since the last measurement
    knn_acc: float | None = None  # the latest kNN accuracy
    probe_auc: float | None = None  # the latest measurement's collapse AUC (probe subset)
    mean_loss: torch.Tensor | None = None  # the latest measurement's mean loss
    images: int = 0  # images trained on since the start of this process
    started: float = field(default_factory=time.perf_counter)
    note: str | None = None  # what the start had to say (a checkpoint fallen back from, a small probe set)
    loggers: Loggers = field(default_factory=Loggers)  # --log: TensorBoard / W&B mirrors of metrics.jsonl (rank 0)

    @classmethod
    def build(cls, cfg: TrainConfig, folder: RunDir, d: Dist, device: torch.device, resume: bool,
              force: bool) -> Run:
        """Check the run can start here, then load the data and build the model, feed, optimizer and schedules."""
        if cfg.batch_size % d.world:
            raise ConfigError(f"--batch-size {cfg.batch_size} does not split over {d.world} ranks: expected a "
                              f"multiple of {d.world} (the batch size is the global batch)")
        if cfg.cuda_graph == "on" and (device.type != "cuda" or d.world > 1):
            raise ConfigError(f"--cuda-graph on on {device.type} with {d.world} process(es) is not accepted: expected "
                              "one CUDA process (or --cuda-graph auto / off)")
        if resume:
            check_writable(folder)  # a read-only run: one line before anything is loaded, trained or changed
        else:
            folder.check_free(force)  # refuse an existing run before anything is loaded (every rank only reads)
        require(cfg.log)  # a --log extra that is not installed: one line before anything is loaded or written
        data = build_data(cfg)
        schedule = make_schedule(cfg, len(data.ssl), labels=lambda: item_labels(data.ssl))
        if schedule.steps_in_epoch(0) == 0:
            raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(data.ssl)} training images: "
                              f"expected at most {len(data.ssl)}")
        model = build_model(cfg, data.in_channels, device, d)
        feed = make_feed(cfg, data.ssl, device, d, schedule)
        opt = make_optimizer(cfg, model.online, model.predictor)
        total = min(schedule.epoch_start(cfg.epochs), cfg.max_steps or np.iinfo(np.int64).max)
        probe = probe_subset(data.train_eval, cfg.probe_size, seed=cfg.seed)
        live = LiveMeasurer(probe, device, d, background=device.type == "cuda",
                            linear=cfg.resolved_backbone == "linear")
        resolved = cfg.resolved(device, d.world) | probe_note(len(probe), model.online.backbone.dim)
        return cls(cfg, folder, d, device, data, schedule, model, feed, opt, make_scheduler(cfg, opt, schedule), total,
                   live, resolved, CollapseWatch(cfg.collapse_window))

    def start(self, force: bool) -> int:
        """A new run: the folder's config and empty records, the loop's seeds, the random-init kNN (and the linear
        model's initial modes, the ODE's initial condition). Returns step 0."""
        cfg, d = self.cfg, self.d
        if d.main:
            self.folder.start(cfg, self.resolved, force, **self.schedule.note(0))
        self.loggers = open_loggers(cfg, self.folder.path, None, d.main)
        torch.manual_seed(cfg.seed + 1 + 1000 * d.rank)  # ranks draw different loader augmentations
        np.random.seed(cfg.seed + 1 + 1000 * d.rank)
        self.knn_acc = self.knn()
        self.write({"step": 0, "epoch": 0, "knn_acc": self.knn_acc, "note": "random init"}, self.knn_acc is not None)
        if cfg.resolved_backbone == "linear":  # the initial condition of the ODE, read off the weights
            self.write({"step": 0, "epoch": 0, **_linear_modes(self.model), "note": "init"})
        self.note = self.resolved["probe"].get("warning")
        return 0

    def resume(self) -> int:
        """Continue from the last checkpoint before any cut in metrics.jsonl (or one line): model, optimizer,
        schedules, feed, the collapse watch, the losses not yet measured and the RNG. Returns its step."""
        state = self.folder.resume_point()
        if state is None:
            raise ConfigError(f"--resume {self.folder.path} has no checkpoint.pt: expected a run that saved one (at "
                              "the end of its first epoch or --checkpoint-every steps)")
        restore(state, self.model, self.opt, self.sched, self.feed)
        step = state["step"]
        self.watch = CollapseWatch(self.cfg.collapse_window, state.get("collapse_history"))
        self.losses = [torch.tensor(v, device=self.device) for v in state["pending_losses"]]
        if self.d.main:
            self.folder.resume_at(state["metrics_lines"])
            self.folder.record_start(self.resolved, step, self.cfg, **self.schedule.note(step))
        self.loggers = open_loggers(self.cfg, self.folder.path, step, self.d.main)
        set_rng_state(state["rng"])
        self.note = self.folder.note
        return step

    def step(self, batch: tuple[torch.Tensor, ...], step: int) -> tuple[torch.Tensor, Any]:
        """One optimisation step (0-based ``step``); a predictor's eigendecomposition on a non-finite F̂ stops the run
        as a divergence."""
        try:
            return optimizer_step(self.model, self.opt, self.sched, batch, self.cfg, step, self.total,
                                  self.feed.prefetch)
        except torch.linalg.LinAlgError:
            _check_finite([torch.tensor(float("nan"))], step + 1, self.folder)
            raise

    def after_step(self, step: int, loss: torch.Tensor, views, batch: int) -> str | None:
        """After ``step`` steps: the finiteness check, the measurement, the kNN, the checkpoint, as they fall due;
        returns a collapse warning if one fired."""
        cfg, schedule = self.cfg, self.schedule
        self.losses.append(self.model.reduce(loss.detach()) / self.d.world)
        self.images += batch * self.d.world
        measure_due = step % cfg.measure_every == 0 or step == self.total
        end_of_epoch = schedule.ends_epoch(step)
        save_due = end_of_epoch or step == self.total or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)
        if step % self.check_every == 0 or measure_due or save_due:
            _check_finite(self.losses[-self.check_every:], step, self.folder)
        if measure_due:
            self.mean_loss = torch.stack(self.losses).double().mean()
            meta = {"step": step, "epoch": schedule.epoch_float(step), "lr": self.opt.param_groups[0]["lr"],
                    **self.model.target.record(step, self.total)}
            self.live.submit(self.model, views, self.mean_loss, meta)
            self.losses = []
        warning = self.drain(wait=save_due)
        knn_due = end_of_epoch and cfg.knn_every and schedule.locate(step)[0] % cfg.knn_every == 0
        if knn_due or step == self.total:
            self.knn_acc = self.knn()
            self.write({"step": step, "epoch": schedule.epoch_float(step), "knn_acc": self.knn_acc},
                       self.knn_acc is not None)
        if save_due and self.d.main:
            self.folder.save_checkpoint({
                **training_state(self.model, self.opt, self.sched, self.feed), "step": step,
                "collapse_history": self.watch.history, "pending_losses": [float(v) for v in self.losses],
                "rng": rng_state(), "metrics_lines": self.folder.count()})
        return warning

    def drain(self, wait: bool) -> str | None:
        """Write the finished measurements (all of them with ``wait``); returns a collapse warning if one fired."""
        warning = None
        for rec in self.live.ready(wait):
            self.probe_auc = rec.get("probe_auc", self.probe_auc)
            if text := self.watch.update(rec):
                rec["warning"] = warning = text
            self.write(rec)
        return warning

    def knn(self) -> float | None:
        """The kNN accuracy of the online backbone (None for data without labels)."""
        data = self.data
        if data.num_classes < 2:
            return None
        return knn_monitor(self.model.online.backbone, data.train_eval, data.test_eval, self.device, self.d,
                           self.cfg.knn_k, self.cfg.knn_t, data.num_classes)

    def write(self, record: dict, due: bool = True) -> None:
        """Append ``record`` to metrics.jsonl and mirror it to the ``--log`` loggers (rank 0, when ``due``)."""
        if due and self.d.main:
            self.folder.append(record)
            self.loggers.write(record)

    def note_switch(self, step: int) -> None:
        """A data schedule that changes here (the hybrid's switch to iid) is noted in config.json."""
        if self.d.main and (switch := self.schedule.switch_at(step)):
            self.folder.record_switch(step, *switch)

    @property
    def check_every(self) -> int:
        """Steps between finiteness checks: each one waits for the device, so on CUDA every 10 steps."""
        return 10 if self.device.type == "cuda" else 1

    def report_start(self, step: int, on_progress) -> None:
        if on_progress:
            on_progress(Progress(step, self.total, self.schedule.locate(step)[0], float("nan"), 0.0,
                                 knn=self.knn_acc, warning=self.note))
            self.started = time.perf_counter()

    def report(self, step: int, warning: str | None, on_progress) -> None:
        """Tell the caller how the run goes (every step on the CPU, every ``check_every`` on CUDA, and at once when a
        warning fired)."""
        if not on_progress or not (step % self.check_every == 0 or step == self.total or warning):
            return
        rate = self.images / max(time.perf_counter() - self.started, 1e-9)
        shown = float(self.losses[-1]) if self.losses else float(self.mean_loss)
        on_progress(Progress(step, self.total, self.schedule.locate(step)[0], shown, rate, self.knn_acc, warning,
                             self.probe_auc))


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
