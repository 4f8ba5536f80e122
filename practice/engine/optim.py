"""Optimizers and the learning-rate schedule.

The online network and the predictor get separate parameter groups: lr alpha and weight decay eta_bar for the
trunk; lr alpha * alpha_p and the predictor's decay for W_p (as in the official code, torch's SGD multiplies the
decay by each group's lr, so the predictor's effective decay rate is alpha_p times its setting).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.schedule import Schedule
from ssltheory.practice.methods.predictors import Predictor


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
    ``cfg.effective_lr`` (``--lr`` after ``--lr-scale``)."""
    groups = [{"params": list(online.parameters()), "lr": cfg.effective_lr, "weight_decay": cfg.weight_decay,
               "name": "online"}]
    pred_params = predictor.trainable_parameters()
    if pred_params:
        groups.append({"params": pred_params, "lr": cfg.effective_lr * cfg.alpha_p,
                       "weight_decay": cfg.pred_weight_decay, "name": "predictor"})
    if cfg.optimizer == "lars":
        return LARS(groups, lr=cfg.effective_lr, momentum=cfg.resolved_momentum)
    return torch.optim.SGD(groups, lr=cfg.effective_lr, momentum=cfg.resolved_momentum)


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
