"""The one training loop for BYOL and SimSiam with every predictor, measuring the theory's quantities as it goes.

Per iteration, in the official DirectPred code's order (directpred.md §3):
1. online forward of both views to the projector outputs f1, f2; fold them into the running correlation F̂;
2. predictor forward p1, p2 (W_p in the graph, so gradients reach the online net through it);
3. target forward: the EMA encoder under no_grad (BYOL), or f detached (SimSiam; not detached with --no-stop-grad);
4. symmetrised loss, backward, one optimizer step (online and predictor groups), lr schedule step;
5. predictor hook (DirectPred sets W_p from F̂ every ``freq`` steps; the symmetric predictor re-symmetrises);
6. EMA update of the target.

Every ``measure_every`` steps a line goes to ``metrics.jsonl`` (loss, spectra of F̂ and W_p, alignment, asymmetry,
collapse AUC and k_eq of the probe set's backbone features, normalised std of f; queued at its step and computed by
:mod:`.live`, on CUDA in a background thread); after every epoch a line with the
kNN accuracy (and one at step 0, the random-init baseline). Checkpoints are atomic and hold the RNG states, the
data position and the length of ``metrics.jsonl``, so a run killed at any step resumes to the same numbers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssltheory.theory.params import RunError

from . import checkpoint
from .config import TrainConfig
from .data import DataBundle, build_data, probe_subset
from .distributed import Dist, all_gather_rows, all_reduce_sum, global_batchnorm, setup, teardown
from .evaluate import extract, knn_correct
from .feed import make_feed
from .live import LiveMeasurer
from .losses import symmetric_loss
from .measure import (
    TOP_MODES,
    RunningCorrelation,
    linear_modes,
    rising,
)
from .models import Encoder, backbone, projector
from .optim import make_optimizer, make_scheduler
from .predictors import build_predictor
from .target import ema_gamma, ema_update, make_target

METRICS = "metrics.jsonl"


class TrainingDiverged(RunError):
    """The loss became NaN or infinite; the message names the step and the checkpoint that was kept."""


class Siamese(nn.Module):
    """Both views through the online encoder and the predictor in one forward: (f1, f2, p1, p2), each (B, d).

    One module call per step is what DDP wraps and torch.compile traces."""

    def __init__(self, online: Encoder, predictor: nn.Module) -> None:
        super().__init__()
        self.online, self.predictor = online, predictor

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        f1, f2 = self.online(x1), self.online(x2)
        return f1, f2, self.predictor(f1), self.predictor(f2)


class Pair(nn.Module):
    """The target encoder on both views in one call, (z1, z2): one compiled graph per step (a CUDA-graphed function
    called twice in a step would overwrite its first outputs)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        return self.encoder(x1), self.encoder(x2)


@dataclass
class Model:
    """The trainable pieces of a run, and how a step runs them (DDP, compile, precision)."""

    online: Encoder
    predictor: torch.nn.Module
    target: Encoder | None
    corr: RunningCorrelation
    forward: nn.Module | None = None  # Siamese(online, predictor), DDP-wrapped and/or compiled
    target_forward: Callable | None = None
    dist: Dist = field(default_factory=Dist)
    precision: str = "fp32"
    graph: Callable | None = None  # a CapturedStep (--cuda-graph), set up on the first step

    def __post_init__(self) -> None:
        if self.forward is None:  # (not `or`: a compiled module refuses bool())
            self.forward = Siamese(self.online, self.predictor)
        if self.target_forward is None and self.target is not None:
            self.target_forward = Pair(self.target)

    def modules(self) -> dict:
        mods = {"online": self.online, "predictor": self.predictor}
        if self.target is not None:
            mods["target"] = self.target
        return mods

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks (x itself on one process)."""
        return all_reduce_sum(x, self.dist)


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
    extra: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(cfg: TrainConfig, in_channels: int, device: torch.device, d: Dist | None = None) -> Model:
    """Online encoder, predictor, target (a copy of the online encoder for BYOL) and F̂, seeded by ``cfg.seed``.

    On several ranks batch norm takes global-batch statistics and the step is wrapped in DDP; on CUDA conv nets run
    channels_last; ``cfg.compile`` compiles the step and the target's forward."""
    d = d or Dist()
    torch.manual_seed(cfg.seed)
    net = backbone(cfg.resolved_backbone, in_channels, cfg.resolved_image_size, cfg.proj_dim)
    head = nn.Identity() if cfg.resolved_backbone == "linear" else projector(net.dim, cfg.proj_hidden, cfg.proj_dim)
    online = Encoder(net, head).to(device)
    predictor = build_predictor(cfg, cfg.proj_dim, device.type).to(device)
    if d.active:
        online, predictor = global_batchnorm(online, device), global_batchnorm(predictor, device)
    if device.type == "cuda" and cfg.resolved_backbone != "linear":
        online = online.to(memory_format=torch.channels_last)
    target = make_target(online) if cfg.uses_ema else None
    forward: nn.Module = Siamese(online, predictor)
    if d.active:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None,
                                          broadcast_buffers=False)
    target_forward = Pair(target) if target is not None else None
    if cfg.compile != "none":
        forward = torch.compile(forward, mode=cfg.compile)
        target_forward = torch.compile(target_forward, mode=cfg.compile) if target is not None else None
    return Model(online, predictor, target, RunningCorrelation(cfg.proj_dim, cfg.rho), forward, target_forward, d,
                 cfg.resolved_precision(device.type))


def forward_loss(model: Model, x1: torch.Tensor, x2: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, ...]:
    """Both branches on both views: (loss of this rank's batch, f1, f2, z1, z2), the features (B, d) in fp32. Under
    bf16 autocast the loss and everything measured stay fp32/fp64. ``autocast_cache`` is off inside a CUDA graph."""
    with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=model.precision == "bf16",
                        cache_enabled=not (x1.is_cuda and torch.cuda.is_current_stream_capturing())):
        f1, f2, p1, p2 = model.forward(x1, x2)
        if model.target is not None:
            with torch.no_grad():
                z1, z2 = model.target_forward(x1, x2)
        elif cfg.stop_grad:
            z1, z2 = f1.detach(), f2.detach()
        else:
            z1, z2 = f1, f2
    f1, f2, p1, p2, z1, z2 = (t.float() for t in (f1, f2, p1, p2, z1, z2))
    return symmetric_loss(p1, p2, z1, z2, cfg.resolved_loss), f1, f2, z1, z2


def observe(model: Model, f1: torch.Tensor, f2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> None:
    """Fold a step's features into F̂ (and the optimal predictor's statistics), over the global batch."""
    reduce = model.reduce if model.dist.active else None
    model.corr.update(torch.cat([f1, f2]), reduce)
    if hasattr(model.predictor, "observe"):  # the plug-in optimal predictor tracks E[f_a f^T]
        model.predictor.observe(f1.detach(), f2.detach(), z1.detach(), z2.detach(), reduce)


def train_step(model: Model, x1: torch.Tensor, x2: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward both views and return (loss of this rank's batch, f1) with F̂ updated over the global batch; the
    caller does backward and the updates."""
    loss, f1, f2, z1, z2 = forward_loss(model, x1, x2, cfg)
    observe(model, f1, f2, z1, z2)
    return loss, f1


def optimizer_step(model: Model, opt, sched, x1: torch.Tensor, x2: torch.Tensor, cfg: TrainConfig, step: int,
                   total: int, prefetch: Callable[[], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One training iteration on views (B, C, H, W) at 0-based ``step`` of ``total``: forward, backward, optimizer
    and lr steps, the predictor hook, the EMA; returns (loss, f1) as :func:`train_step`.

    ``prefetch`` (the feed's) is called once the step's device work is queued and before the predictor hook, the
    one part that may wait for the device (DirectPred's eigendecomposition checks its result on the host): the host
    makes the next batch while the device is busy, so that it has the next step to queue as soon as the wait ends.
    """
    if x1.is_cuda and x1.dim() == 4:
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    if model.graph is None and x1.is_cuda and cfg.resolved_cuda_graph("cuda", model.dist.world):
        from .graphed import CapturedStep

        opt.zero_grad(set_to_none=True)
        model.graph = CapturedStep(lambda a, b: forward_loss(model, a, b, cfg), model.modules().values(), x1, x2)
    if model.graph is not None:  # forward and backward replayed from one CUDA graph; grads land in place
        loss, f1, f2, z1, z2 = model.graph(x1, x2)
        observe(model, f1, f2, z1, z2)
    else:
        if cfg.compile in ("reduce-overhead", "max-autotune"):  # CUDA graphs: a new step may reuse their outputs
            torch.compiler.cudagraph_mark_step_begin()
        loss, f1 = train_step(model, x1, x2, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    if prefetch is not None:
        prefetch()
    model.predictor.after_step(step, model.corr.F.to(x1.device))
    if model.target is not None:
        ema_update(model.target, model.online, ema_gamma(cfg.ema, step, total, cfg.ema_schedule))
    return loss, f1


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False,
          on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Train ``cfg`` into ``run_dir`` (or continue it with ``resume``); returns the final summary dict.

    Writes ``config.json`` (new runs), ``metrics.jsonl``, ``checkpoint.pt`` and ``summary.json``. Raises
    :class:`TrainingDiverged` on a non-finite loss, leaving the last good checkpoint in place. Under ``torchrun``
    every rank runs this; rank 0 alone writes files and reports progress (the others return an empty dict).
    """
    d, device = setup(resolve_device(cfg.device))
    try:
        return _train(cfg, Path(run_dir), resume, on_progress if d.main else None, d, device)
    finally:
        teardown()


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, on_progress, d: Dist, device: torch.device) -> dict:
    from ssltheory.theory.params import ConfigError

    if cfg.batch_size % d.world:
        raise ConfigError(f"--batch-size {cfg.batch_size} does not split over {d.world} ranks: expected a multiple "
                          f"of {d.world} (the batch size is the global batch)")
    if cfg.cuda_graph == "on" and (device.type != "cuda" or d.world > 1):
        raise ConfigError(f"--cuda-graph on on {device.type} with {d.world} process(es) is not accepted: expected "
                          "one CUDA process (or --cuda-graph auto / off)")
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    data = build_data(cfg)
    model = build_model(cfg, data.in_channels, device, d)
    feed = make_feed(cfg, data.ssl, device, d)
    opt = make_optimizer(cfg, model.online, model.predictor)
    steps_per_epoch = len(data.ssl) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(data.ssl)} training images: "
                          f"expected at most {len(data.ssl)}")
    sched = make_scheduler(cfg, opt, steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    probe = probe_subset(data.train_eval, cfg.probe_size, seed=cfg.seed)
    metrics_path = run_dir / METRICS
    resolved = {"device": str(device), "data_path": cfg.resolved_data_path(device.type),
                "precision": cfg.resolved_precision(device.type), "world_size": d.world,
                "cuda_graph": cfg.resolved_cuda_graph(device.type, d.world),
                "directpred_solver": cfg.resolved_directpred_solver(device.type),
                "per_rank_batch": cfg.batch_size // d.world, "global_batch": cfg.batch_size,
                "lr_used": cfg.effective_lr, "lr_rule": f"lr x {cfg.lr_scale} scaling of batch {cfg.batch_size} / 256"
                if cfg.lr_scale != "none" else "lr as given (batch size is global, so it does not depend on ranks)"}

    step, auc_history, losses = 0, [], []
    state = checkpoint.load(run_dir) if resume else None
    if state is not None:
        for name, module in model.modules().items():
            module.load_state_dict(state["modules"][name])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        model.corr.load_state_dict(state["corr"])
        feed.load_state_dict(state.get("feed", {}))
        step, auc_history = state["step"], state["auc_history"]
        losses = [torch.tensor(v, device=device) for v in state["pending_losses"]]
        if d.main:
            _truncate_lines(metrics_path, state["metrics_lines"])
            _record_start(run_dir, resolved, step)
        checkpoint.set_rng_state(state["rng"])
    else:
        if d.main:
            cfg.save(run_dir / "config.json", {**resolved, "starts": [{"step": 0, "world_size": d.world}]})
            metrics_path.write_text("")
        torch.manual_seed(cfg.seed + 1 + 1000 * d.rank)  # ranks draw different loader augmentations
        np.random.seed(cfg.seed + 1 + 1000 * d.rank)
        knn0 = _knn(model, data, cfg, device) if data.num_classes > 1 else None
        if knn0 is not None and d.main:
            _append(metrics_path, {"step": 0, "epoch": 0, "knn_acc": knn0, "note": "random init"})
        if cfg.resolved_backbone == "linear" and d.main:  # the initial condition of the ODE, read off the weights
            _append(metrics_path, {"step": 0, "epoch": 0, **_linear_modes(model), "note": "init"})
        if on_progress:
            on_progress(Progress(0, total, 0, float("nan"), 0.0, knn=knn0))

    model.online.train()
    if model.target is not None:
        model.target.train()
    last_knn = None
    cuda = device.type == "cuda"
    check_every = 10 if cuda else 1  # a finiteness check waits for the device; on CUDA only every few steps
    live = LiveMeasurer(probe, device, d, background=cuda, linear=cfg.resolved_backbone == "linear")
    t_last, n_images = time.perf_counter(), 0

    def drain(wait: bool) -> str | None:
        """Write the finished measurements (all with ``wait``); returns a collapse warning if one fired."""
        warning = None
        for rec in live.ready(wait):
            auc_history.append(rec["auc"])
            if rising(auc_history, cfg.collapse_window):
                warning = (f"collapse metric rose for {cfg.collapse_window} measurements in a row "
                           f"(AUC {auc_history[-cfg.collapse_window]:.4f} -> {rec['auc']:.4f}) at step {rec['step']}")
                rec["warning"] = warning
            if d.main:
                _append(metrics_path, rec)
        return warning

    try:
        while step < total:
            epoch, start_batch = divmod(step, steps_per_epoch)
            for x1, x2 in feed.epoch(epoch, start_batch):
                loss, f1 = optimizer_step(model, opt, sched, x1, x2, cfg, step, total, feed.prefetch)
                step += 1
                losses.append(model.reduce(loss.detach()) / d.world)
                n_images += x1.shape[0] * d.world
                measure_due = step % cfg.measure_every == 0 or step == total
                end_of_epoch = step % steps_per_epoch == 0
                save_due = (end_of_epoch or step == total
                            or bool(cfg.checkpoint_every and step % cfg.checkpoint_every == 0))
                if step % check_every == 0 or measure_due or save_due:
                    _check_finite(losses[-check_every:], step, run_dir)
                if measure_due:
                    mean_loss = torch.stack(losses).double().mean()
                    live.submit(model, f1, mean_loss, {
                        "step": step, "epoch": step / steps_per_epoch, "lr": opt.param_groups[0]["lr"],
                        "gamma": ema_gamma(cfg.ema, step, total, cfg.ema_schedule)})
                    losses = []
                warning = drain(wait=save_due)
                knn_due = end_of_epoch and cfg.knn_every and (step // steps_per_epoch) % cfg.knn_every == 0
                if (knn_due or step == total) and data.num_classes > 1:
                    last_knn = _knn(model, data, cfg, device)
                    if d.main:
                        _append(metrics_path, {"step": step, "epoch": step / steps_per_epoch, "knn_acc": last_knn})
                if d.main and save_due:
                    _save(run_dir, model, opt, sched, step, auc_history, losses, metrics_path, feed)
                if on_progress and (step % check_every == 0 or step == total or warning):
                    now = time.perf_counter()
                    rate = n_images / max(now - t_last, 1e-9)
                    shown = float(losses[-1]) if losses else float(mean_loss)
                    on_progress(Progress(step, total, step // steps_per_epoch, shown, rate, knn=last_knn,
                                         warning=warning))
                if step >= total:
                    break
    finally:
        live.close()
    if not d.main:
        return {}
    summary = summarize(metrics_path)
    from ssltheory.theory.io import save_json

    save_json(run_dir / "summary.json", summary)
    return summary


def _record_start(run_dir: Path, resolved: dict, step: int) -> None:
    """Note a resume (its step and world size) in config.json's ``run`` block."""
    from ssltheory.theory.io import save_json

    path = run_dir / "config.json"
    doc = json.loads(path.read_text())
    starts = doc.get("run", {}).get("starts", [])
    doc["run"] = {**resolved, "starts": [*starts, {"step": step, "world_size": resolved["world_size"]}]}
    save_json(path, doc)


def _check_finite(window: list[torch.Tensor], step: int, run_dir: Path) -> None:
    """Raise TrainingDiverged naming the first non-finite loss among the last len(window) steps (ending at
    ``step``, 1-based) and the checkpoint that is kept."""
    finite = torch.isfinite(torch.stack(window))
    if bool(finite.all()):
        return
    bad = int((~finite).nonzero()[0])
    saved = checkpoint.load(run_dir)
    where = f"step {saved['step']}" if saved else "none written yet"
    raise TrainingDiverged(f"loss is {float(window[bad])} at step {step - len(window) + bad}: stopped; the last "
                           f"good checkpoint ({where}) is kept in {run_dir}")


def _linear_modes(model: Model) -> dict:
    """Exact modes (s_model, p_model, tau_model) of the linear model from its weights (X = I)."""
    W_a = model.target.backbone.weight if model.target is not None else None
    return linear_modes(model.online.backbone.weight, model.predictor.W_p(), W_a)


def _knn(model: Model, data: DataBundle, cfg: TrainConfig, device: torch.device) -> float:
    """kNN accuracy; under DDP the bank is extracted in shards and gathered, each rank classifies its shard of the
    queries and the correct counts are summed."""
    d, net = model.dist, model.online.backbone
    on = device if device.type == "cuda" else torch.device("cpu")  # NCCL gathers device tensors, gloo CPU ones
    bank, bank_y = extract(net, data.train_eval, device, shard=(d.rank, d.world))
    bank, bank_y = all_gather_rows(bank.to(on), d).cpu(), all_gather_rows(bank_y.to(on), d).cpu()
    query, query_y = extract(net, data.test_eval, device, shard=(d.rank, d.world))
    counts = torch.tensor([knn_correct(bank, bank_y, query, query_y, k=cfg.knn_k, t=cfg.knn_t,
                                       num_classes=data.num_classes) if len(query) else 0, len(query)],
                          dtype=torch.float64, device=on)
    counts = model.reduce(counts)
    return float(counts[0] / counts[1])


def _save(run_dir: Path, model: Model, opt, sched, step: int, auc_history: list, losses: list,
          metrics_path: Path, feed) -> None:
    checkpoint.save(run_dir, {
        "modules": {k: m.state_dict() for k, m in model.modules().items()},
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "corr": model.corr.state_dict(),
        "step": step, "auc_history": list(auc_history), "pending_losses": [float(v) for v in losses],
        "rng": checkpoint.rng_state(), "metrics_lines": _count_lines(metrics_path), "feed": feed.state_dict(),
    })


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def _count_lines(path: Path) -> int:
    return sum(1 for _ in open(path)) if path.exists() else 0


def _truncate_lines(path: Path, n: int) -> None:
    """Keep the first ``n`` lines: what was written after the checkpoint is redone on resume."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    path.write_text("".join(lines[:n]))


def read_metrics(path: Path) -> list[dict]:
    """All records of a ``metrics.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def summarize(metrics_path: Path) -> dict:
    """Final numbers of a run: kNN at init and at the end, and the last measurement."""
    recs = read_metrics(metrics_path)
    knn = [r for r in recs if "knn_acc" in r]
    meas = [r for r in recs if "auc" in r]
    out = {"knn_acc_init": knn[0]["knn_acc"] if knn else None, "knn_acc_final": knn[-1]["knn_acc"] if knn else None,
           "steps": recs[-1]["step"] if recs else 0}
    if meas:
        last = meas[-1]
        keys = ("loss", "auc", "k_eq", "auc_projector", "feature_std", "feature_std_x_sqrt_d", "asymmetry",
                "asymmetry_top")
        out.update({k: last[k] for k in keys if k in last})
        if "alignment" in last:
            s = np.asarray(last["s"])
            top = s > TOP_MODES * s[0] if s[0] > 0 else np.zeros_like(s, bool)
            out["mean_alignment_top_modes"] = float(np.mean(np.asarray(last["alignment"])[top])) if top.any() else None
            out["top_modes"] = int(top.sum())
    return out
