"""The target branch: an EMA copy of the online encoder (BYOL) or the online encoder itself (SimSiam)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def make_target(online: nn.Module) -> nn.Module:
    """An exact copy of the online encoder that gradients never reach (BYOL's target at step 0).

    The official DirectPred code starts the target from its own random init; we start it as a copy, as BYOL does.
    """
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, gamma: float) -> None:
    """theta_a <- gamma theta_a + (1 - gamma) theta (parameters; buffers are copied, the target uses batch stats)."""
    pt, po = list(target.parameters()), [p.detach() for p in online.parameters()]
    if len(pt) != len(po):
        raise ValueError(f"target has {len(pt)} parameter tensors, online {len(po)}: expected the same network")
    torch._foreach_lerp_(pt, po, 1.0 - gamma)  # one fused launch per group instead of one per tensor
    bt, bo = list(target.buffers()), list(online.buffers())
    if bt:
        torch._foreach_copy_(bt, bo)


def ema_gamma(gamma0: float, step: int, total_steps: int, schedule: str = "constant") -> float:
    """gamma_a at ``step``: constant (the paper), or cosine from gamma0 to 1 over the run (BYOL)."""
    if schedule == "constant" or total_steps <= 0:
        return gamma0
    return 1.0 - (1.0 - gamma0) * (math.cos(math.pi * min(step, total_steps) / total_steps) + 1.0) / 2.0
