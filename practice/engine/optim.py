"""Optimizers and the learning-rate schedule.

The online network and the predictor get separate parameter groups: lr alpha and weight decay eta_bar for the
trunk; lr alpha * alpha_p and the predictor's decay for W_p (as in the official code, torch's SGD multiplies the
decay by each group's lr, so the predictor's effective decay rate is alpha_p times its setting).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ssltheory.practice.data.registry import DATASETS
from ssltheory.practice.data.schedule import Schedule
from ssltheory.practice.methods.predictors import Predictor
from ssltheory.practice.settings import Setting, declare, rule
from ssltheory.theory.checks import ConfigError

if TYPE_CHECKING:
    from ssltheory.practice.config import TrainConfig


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al. 2017), as used for large-batch BYOL.

    Each weight's update is scaled by ``trust * ||w|| / ||g + wd w||``; biases and BN parameters (1-D tensors)
    are updated as plain SGD and not decayed.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, trust: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.norm(p), torch.linalg.norm(g)
                    scale = torch.where((w_norm > 0) & (g_norm > 0), group["trust"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    g = g * scale
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def make_optimizer(cfg: TrainConfig, online: nn.Module, predictor: Predictor) -> torch.optim.Optimizer:
    """One optimizer with two groups: online (lr, weight_decay) and predictor (lr * alpha_p, its decay); lr is
    ``cfg.resolved_lr`` (``--lr`` after ``--lr-scale``)."""
    groups = [{"params": list(online.parameters()), "lr": cfg.resolved_lr, "weight_decay": cfg.weight_decay,
               "name": "online"}]
    pred_params = predictor.trainable_parameters()
    if pred_params:
        groups.append({"params": pred_params, "lr": cfg.resolved_lr * cfg.alpha_p,
                       "weight_decay": cfg.resolved_predictor_weight_decay, "name": "predictor"})
    if cfg.optimizer == "lars":
        return LARS(groups, lr=cfg.resolved_lr, momentum=cfg.resolved_momentum)
    return torch.optim.SGD(groups, lr=cfg.resolved_lr, momentum=cfg.resolved_momentum)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, min_lr: float = 0.0) -> float:
    """Multiplier of the base lr at 0-based ``step``: 1 (``constant``, the paper's) or, for ``cosine``, a linear
    warm-up then a cosine decay to the floor ``min_lr`` (a fraction of the peak; UniGrad's 1e-3).

    Warm-up (step < warmup_steps): min_lr + (1 - min_lr) (step + 1) / warmup_steps, the line from min_lr (before the
    first step) to 1 (the last warm-up step); with min_lr = 0 it is (step + 1) / warmup_steps exactly. Then
    min_lr + (1 - min_lr) (1 + cos(pi p)) / 2 with p = (step - warmup_steps) / (total_steps - warmup_steps), clipped
    at 1, so 1 right after the warm-up and min_lr at ``total_steps``. (UniGrad's code divides by the total instead
    of the post-warm-up length, ending at ~0.7% of the peak rather than at min_lr; not reproduced.)
    """
    if schedule == "constant":
        return 1.0
    if step < warmup_steps:
        return min_lr + (1.0 - min_lr) * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (1.0 - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, schedule: Schedule):
    """torch's LambdaLR over :func:`lr_factor`, stepped once per iteration. ``--lr-schedule-unit step``: the factor
    of the global step, the run's and the warm-up's lengths in steps from the data schedule (its epochs may differ in
    length; UniGrad's code). ``epoch``: the factor of the epoch the step is in, over ``--epochs`` and
    ``--warmup-epochs``, so the lr changes once, at each epoch's start (the SimSiam / collapse code's
    ``adjust_learning_rate``: epoch e of E runs at min_lr + (1 - min_lr) (1 + cos(pi e / E)) / 2 without warm-up;
    its warm-up line (1 + e) / (1 + W) is not reproduced, this one's (e + 1) / W is used, and the collapse recipes
    have none). With ``--fix-pred-lr`` the predictor's group follows the warm-up, then stays at its peak (the
    collapse code's ``fix_lr``: no decay)."""
    if cfg.lr_schedule_unit == "epoch":
        total, warm = cfg.epochs, cfg.warmup_epochs

        def unit(s: int) -> int:  # the epoch of 0-based step s
            return schedule.locate(s)[0]
    else:
        total, warm = schedule.epoch_start(cfg.epochs), schedule.epoch_start(cfg.warmup_epochs)

        def unit(s: int) -> int:
            return s

    def decayed(s: int) -> float:
        return lr_factor(unit(s), total, warm, cfg.lr_schedule, cfg.min_lr)

    def fixed(s: int) -> float:
        return lr_factor(min(unit(s), warm), total, warm, cfg.lr_schedule, cfg.min_lr)

    def online(s: int) -> float:  # --chunk-warmup-steps: 0 while the predictor adapts to a new chunk
        return 0.0 if schedule.frozen(s) else decayed(s)

    return torch.optim.lr_scheduler.LambdaLR(opt, [fixed if cfg.fix_pred_lr and g.get("name") == "predictor"
                                                   else online if g.get("name") == "online"
                                                   else decayed for g in opt.param_groups])


LR_REFERENCE_BATCH = 256
"""The batch that ``--lr-scale`` scales from (lr x batch / 256)."""


def effective_lr(cfg: Any) -> float:
    """The lr the optimizer uses: ``--lr`` scaled by the global batch over 256 (``--lr-scale``); the same on any number
    of ranks, since ``--batch-size`` is the global batch."""
    ratio = cfg.batch_size / LR_REFERENCE_BATCH
    return cfg.lr * {"none": 1.0, "linear": ratio, "sqrt": ratio ** 0.5}[cfg.lr_scale]


declare(
    Setting("lr", 0.03, "learning rate α of the online net", "Optimisation", float, paper="0.03", low=0.0,
            low_open=True, high=100.0, resolve=effective_lr),
    Setting("momentum", None, "SGD momentum [default: 0.9 (the paper's); 0 for the theory's synthetic data, whose ODE "
            "is plain gradient flow]", "Optimisation", float | None, low=0.0, high=1.0, high_open=True,
            resolve=lambda cfg: cfg.momentum if cfg.momentum is not None else
            0.0 if DATASETS[cfg.dataset].linear else 0.9),
    Setting("weight_decay", 4e-4, "weight decay of the trunk (torch SGD's; η = this in the ODE's time t = step × lr)",
            "Optimisation", float, paper="4e-4", low=0.0, high=1.0),
    Setting("predictor_weight_decay", None, "weight decay of the predictor [default: as trunk]", "Optimisation",
            float | None, low=0.0, high=1.0, resolve=lambda cfg: cfg.weight_decay if cfg.predictor_weight_decay is None
            else cfg.predictor_weight_decay),
    Setting("alpha_p", 1.0, "predictor learning-rate ratio α_p (lr of W_p = α_p × lr)", "Optimisation", float,
            paper="1", low=0.0, low_open=True, high=1e4),
    Setting("lr_schedule", "constant", "lr schedule: constant | cosine (with warm-up)", "Optimisation", str,
            paper="constant", choices=("constant", "cosine")),
    Setting("lr_schedule_unit", "step", "when the cosine lr and its warm-up move: step (every iteration, as UniGrad's "
            "code) | epoch (once, at each epoch's start, as the SimSiam / collapse code's adjust_learning_rate; the "
            "collapse recipes' paper scale)", "Optimisation", str, choices=("step", "epoch")),
    Setting("fix_pred_lr", False, "the predictor's lr follows the warm-up, then stays at its peak (no cosine decay; "
            "the SimSiam code's --fix-pred-lr)", "Optimisation", bool),
    Setting("min_lr", 0.0, "floor of the cosine lr schedule and start of its warm-up, as a fraction of the peak lr "
            "(UniGrad: 1e-3)", "Optimisation", float, paper="0", low=0.0, high=1.0),
    Setting("warmup_epochs", 0, "linear warm-up epochs of the cosine lr schedule", "Optimisation", int, low=0,
            high=10**6),
    Setting("optimizer", "sgd", "sgd | lars", "Optimisation", str, paper="sgd", choices=("sgd", "lars")),
    Setting("lr_scale", "none", "none | linear (lr × batch/256) | sqrt; the batch is the global batch over all "
            "torchrun ranks", "Optimisation", str, paper="none", choices=("none", "linear", "sqrt")),
)


@rule
def _check_warmup(cfg: Any) -> None:
    if cfg.warmup_epochs >= cfg.epochs and cfg.lr_schedule == "cosine":
        raise ConfigError(f"--warmup-epochs {cfg.warmup_epochs} is out of range: expected fewer than --epochs "
                          f"{cfg.epochs}")
