"""The one training loop for BYOL and SimSiam with every predictor, measuring the theory's quantities as it goes.

Per iteration, in the official DirectPred code's order (directpred.md §3):
1. online forward of both views to the projector outputs f1, f2; fold them into the running correlation F̂;
2. predictor forward p1, p2 (W_p in the graph, so gradients reach the online net through it);
3. target forward: the EMA encoder under no_grad (BYOL), or f detached (SimSiam; not detached with --no-stop-grad);
4. symmetrised loss, backward, one optimizer step (online and predictor groups), lr schedule step;
5. predictor hook (DirectPred sets W_p from F̂ every ``freq`` steps; the symmetric predictor re-symmetrises);
6. EMA update of the target.

Every ``measure_every`` steps a line goes to ``metrics.jsonl`` (loss, spectra of F̂ and W_p, alignment, asymmetry,
collapse AUC and k_eq of the probe set's backbone features, normalised std of f); after every epoch a line with the
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
from torch.utils.data import DataLoader, Sampler

from ssltheory.theory.params import RunError

from . import checkpoint
from .config import TrainConfig
from .data import DataBundle, build_data, probe_subset
from .evaluate import extract, knn_accuracy
from .losses import symmetric_loss
from .measure import (
    TOP_MODES,
    RunningCorrelation,
    collapse_auc,
    linear_modes,
    normalized_std,
    predictor_metrics,
    rising,
)
from .models import Encoder, backbone, projector
from .optim import make_optimizer, make_scheduler
from .predictors import build_predictor
from .target import ema_gamma, ema_update, make_target

METRICS = "metrics.jsonl"


class TrainingDiverged(RunError):
    """The loss became NaN or infinite; the message names the step and the checkpoint that was kept."""


class EpochSampler(Sampler[int]):
    """A permutation fixed by (seed, epoch), started at a batch offset.

    Resuming mid-epoch then draws no extra random numbers.
    """

    def __init__(self, n: int, seed: int, epoch: int, start_batch: int, batch_size: int) -> None:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = torch.randperm(n, generator=g)[start_batch * batch_size:].tolist()

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


@dataclass
class Model:
    """The trainable pieces of a run."""

    online: Encoder
    predictor: torch.nn.Module
    target: Encoder | None
    corr: RunningCorrelation

    def modules(self) -> dict:
        mods = {"online": self.online, "predictor": self.predictor}
        if self.target is not None:
            mods["target"] = self.target
        return mods


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


def build_model(cfg: TrainConfig, in_channels: int, device: torch.device) -> Model:
    """Online encoder, predictor, target (a copy of the online encoder for BYOL) and F̂, seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    net = backbone(cfg.resolved_backbone, in_channels, cfg.resolved_image_size, cfg.proj_dim)
    head = nn.Identity() if cfg.resolved_backbone == "linear" else projector(net.dim, cfg.proj_hidden, cfg.proj_dim)
    online = Encoder(net, head).to(device)
    predictor = build_predictor(cfg, cfg.proj_dim).to(device)
    target = make_target(online) if cfg.uses_ema else None
    return Model(online, predictor, target, RunningCorrelation(cfg.proj_dim, cfg.rho))


def train_step(model: Model, x1: torch.Tensor, x2: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward both views and return (loss, f1) with F̂ updated; the caller does backward and the updates."""
    f1, f2 = model.online(x1), model.online(x2)
    model.corr.update(torch.cat([f1, f2]))
    p1, p2 = model.predictor(f1), model.predictor(f2)
    if model.target is not None:
        with torch.no_grad():
            z1, z2 = model.target(x1), model.target(x2)
    elif cfg.stop_grad:
        z1, z2 = f1.detach(), f2.detach()
    else:
        z1, z2 = f1, f2
    if hasattr(model.predictor, "observe"):  # the plug-in optimal predictor tracks E[f_a f^T]
        model.predictor.observe(f1.detach(), f2.detach(), z1.detach(), z2.detach())
    return symmetric_loss(p1, p2, z1, z2, cfg.resolved_loss), f1


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False,
          on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Train ``cfg`` into ``run_dir`` (or continue it with ``resume``); returns the final summary dict.

    Writes ``config.json`` (new runs), ``metrics.jsonl``, ``checkpoint.pt`` and ``summary.json``. Raises
    :class:`TrainingDiverged` on a non-finite loss, leaving the last good checkpoint in place.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    data = build_data(cfg)
    model = build_model(cfg, data.in_channels, device)
    opt = make_optimizer(cfg, model.online, model.predictor)
    steps_per_epoch = len(data.ssl) // cfg.batch_size
    if steps_per_epoch == 0:
        from ssltheory.theory.params import ConfigError

        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(data.ssl)} training images: "
                          f"expected at most {len(data.ssl)}")
    sched = make_scheduler(cfg, opt, steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    probe = probe_subset(data.train_eval, cfg.probe_size, seed=cfg.seed)
    metrics_path = run_dir / METRICS

    step, auc_history, losses = 0, [], []
    state = checkpoint.load(run_dir) if resume else None
    if state is not None:
        for name, module in model.modules().items():
            module.load_state_dict(state["modules"][name])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        model.corr.load_state_dict(state["corr"])
        step, auc_history, losses = state["step"], state["auc_history"], state["pending_losses"]
        _truncate_lines(metrics_path, state["metrics_lines"])
        checkpoint.set_rng_state(state["rng"])
    else:
        cfg.save(run_dir / "config.json")
        metrics_path.write_text("")
        torch.manual_seed(cfg.seed + 1)
        np.random.seed(cfg.seed + 1)
        knn0 = _knn(model, data, cfg, device) if data.num_classes > 1 else None
        if knn0 is not None:
            _append(metrics_path, {"step": 0, "epoch": 0, "knn_acc": knn0, "note": "random init"})
        if cfg.resolved_backbone == "linear":  # the initial condition of the ODE, read off the weights
            _append(metrics_path, {"step": 0, "epoch": 0, **_linear_modes(model), "note": "init"})
        if on_progress:
            on_progress(Progress(0, total, 0, float("nan"), 0.0, knn=knn0))

    model.online.train()
    if model.target is not None:
        model.target.train()
    last_knn = None
    t_last, n_images = time.perf_counter(), 0
    while step < total:
        epoch, start_batch = divmod(step, steps_per_epoch)
        sampler = EpochSampler(len(data.ssl), cfg.seed, epoch, start_batch, cfg.batch_size)
        loader = DataLoader(data.ssl, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                            num_workers=cfg.workers, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
        for (x1, x2), _ in loader:
            x1, x2 = x1.to(device, non_blocking=True), x2.to(device, non_blocking=True)
            loss, f1 = train_step(model, x1, x2, cfg)
            if not torch.isfinite(loss):
                saved = checkpoint.load(run_dir)
                where = f"step {saved['step']}" if saved else "none written yet"
                raise TrainingDiverged(f"loss is {loss.item()} at step {step}: stopped; the last good "
                                       f"checkpoint ({where}) is kept in {run_dir}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            model.predictor.after_step(step, model.corr.F.to(device))
            if model.target is not None:
                ema_update(model.target, model.online, ema_gamma(cfg.ema, step, total, cfg.ema_schedule))
            step += 1
            losses.append(float(loss.detach()))
            n_images += x1.shape[0]
            warning = None
            if step % cfg.measure_every == 0 or step == total:
                rec = _measure(model, probe, f1, cfg, device)
                rec.update(step=step, epoch=step / steps_per_epoch, loss=float(np.mean(losses)),
                           lr=opt.param_groups[0]["lr"], gamma=ema_gamma(cfg.ema, step, total, cfg.ema_schedule))
                losses = []
                auc_history.append(rec["auc"])
                if rising(auc_history, cfg.collapse_window):
                    warning = (f"collapse metric rose for {cfg.collapse_window} measurements in a row "
                               f"(AUC {auc_history[-cfg.collapse_window]:.4f} -> {rec['auc']:.4f}) at step {step}")
                    rec["warning"] = warning
                _append(metrics_path, rec)
            end_of_epoch = step % steps_per_epoch == 0
            knn_due = end_of_epoch and cfg.knn_every and (step // steps_per_epoch) % cfg.knn_every == 0
            if (knn_due or step == total) and data.num_classes > 1:
                last_knn = _knn(model, data, cfg, device)
                _append(metrics_path, {"step": step, "epoch": step / steps_per_epoch, "knn_acc": last_knn})
            if end_of_epoch or step == total or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                _save(run_dir, model, opt, sched, step, auc_history, losses, metrics_path)
            if on_progress:
                now = time.perf_counter()
                rate = n_images / max(now - t_last, 1e-9)
                shown = losses[-1] if losses else float(loss.detach())
                on_progress(Progress(step, total, step // steps_per_epoch, shown, rate, knn=last_knn, warning=warning))
            if step >= total:
                break
    summary = summarize(metrics_path)
    from .io import save_json

    save_json(run_dir / "summary.json", summary)
    return summary


def _measure(model: Model, probe, f1: torch.Tensor, cfg: TrainConfig, device: torch.device) -> dict:
    rec = predictor_metrics(model.corr.F, model.predictor.W_p())
    feats, _ = extract(model.online.backbone, probe, device, batch_size=256)
    c = collapse_auc(feats)
    with torch.no_grad():  # the same metric on the projector output f, where the ablations collapse first
        model.online.projector.eval()
        proj = collapse_auc(model.online.projector(feats.to(device)))
        model.online.projector.train()
    rec.update(auc=c["auc"], k_eq=c["k_eq"], auc_projector=proj["auc"], feature_std=normalized_std(f1),
               feature_std_x_sqrt_d=normalized_std(f1) * f1.shape[1] ** 0.5)
    if cfg.resolved_backbone == "linear":
        rec.update(_linear_modes(model))
    return rec


def _linear_modes(model: Model) -> dict:
    """Exact modes (s_model, p_model, tau_model) of the linear model from its weights (X = I)."""
    W_a = model.target.backbone.weight if model.target is not None else None
    return linear_modes(model.online.backbone.weight, model.predictor.W_p(), W_a)


def _knn(model: Model, data: DataBundle, cfg: TrainConfig, device: torch.device) -> float:
    bank, bank_y = extract(model.online.backbone, data.train_eval, device)
    query, query_y = extract(model.online.backbone, data.test_eval, device)
    return knn_accuracy(bank, bank_y, query, query_y, k=cfg.knn_k, t=cfg.knn_t, num_classes=data.num_classes)


def _save(run_dir: Path, model: Model, opt, sched, step: int, auc_history: list, losses: list,
          metrics_path: Path) -> None:
    checkpoint.save(run_dir, {
        "modules": {k: m.state_dict() for k, m in model.modules().items()},
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "corr": model.corr.state_dict(),
        "step": step, "auc_history": list(auc_history), "pending_losses": list(losses), "rng": checkpoint.rng_state(),
        "metrics_lines": _count_lines(metrics_path),
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
