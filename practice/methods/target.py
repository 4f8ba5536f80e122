"""The target branch: how the targets z1, z2 of a step are made from the two views.

- ``ema`` (:class:`MomentumEncoder`): a copy of the online encoder updated as an exponential moving average,
  theta_a <- gamma_a theta_a + (1 - gamma_a) theta, run under no_grad (BYOL); gamma_a constant or on BYOL's cosine
  schedule to 1 (:func:`ema_gamma`);
- ``stop-grad`` (:class:`StopGradient`): the online encoder's own outputs, detached (SimSiam);
- ``online`` (:class:`Online`): the online outputs with gradient (SimSiam without stop-gradient, Theorem 2).

A branch is called inside the step's autocast with the views and the online outputs; ``after_step`` runs once the
optimizer has stepped; ``record`` adds what a measurement should note about the target.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ssltheory.practice.settings import Setting, declare


class TargetBranch:
    """Base of the target branches: ``network`` is a network of its own (checkpointed as ``target``), or None."""

    mode = ""
    network: nn.Module | None = None

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor):
        """(z1, z2), each (B, d), for views (B, C, H, W) whose online outputs are f1, f2."""
        raise NotImplementedError

    def after_step(self, online: nn.Module, step: int, total: int) -> None:
        """After the optimizer's step ``step`` (0-based) of ``total``."""

    def record(self, step: int, total: int) -> dict:
        """What a measurement at ``step`` notes about the target (e.g. gamma_a)."""
        return {}


class StopGradient(TargetBranch):
    mode = "stop-grad"

    def __call__(self, x1, x2, f1, f2):
        return f1.detach(), f2.detach()


class Online(TargetBranch):
    mode = "online"

    def __call__(self, x1, x2, f1, f2):
        return f1, f2


class Pair(nn.Module):
    """An encoder on both views in one call, (z1, z2): one compiled graph per step (a CUDA-graphed function
    called twice in a step would overwrite its first outputs)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x1: torch.Tensor, x2: torch.Tensor):
        return self.encoder(x1), self.encoder(x2)


class MomentumEncoder(TargetBranch):
    """BYOL's target: an exact copy of the online encoder at step 0, then its EMA (rate gamma_a, ``schedule``).

    The official DirectPred code starts the target from its own random init; we start it as a copy, as BYOL does.
    ``forward`` (both views in one call) is what ``--compile`` compiles."""

    mode = "ema"

    def __init__(self, online: nn.Module, gamma_a: float, schedule: str = "constant") -> None:
        self.network = make_target(online)
        self.forward: nn.Module = Pair(self.network)
        self.gamma_a, self.schedule = gamma_a, schedule

    def __call__(self, x1, x2, f1, f2):
        with torch.no_grad():
            return self.forward(x1, x2)

    def after_step(self, online: nn.Module, step: int, total: int) -> None:
        ema_update(self.network, online, self.gamma(step, total))

    def gamma(self, step: int, total: int) -> float:
        return ema_gamma(self.gamma_a, step, total, self.schedule)

    def record(self, step: int, total: int) -> dict:
        return {"gamma": self.gamma(step, total)}


def make_branch(mode: str, online: nn.Module, cfg) -> TargetBranch:
    """The target branch ``mode`` (``ema``, ``stop-grad``, ``online``) for the online encoder of a run."""
    if mode == "ema":
        return MomentumEncoder(online, cfg.gamma_a, cfg.ema_schedule)
    return {"stop-grad": StopGradient, "online": Online}[mode]()


class Targets:
    """The positive-target branch and the negatives' branch of a run (UniGrad's Table 3: e.g. momentum positives with
    stop-gradient negatives), with one momentum encoder at most, shared when both are ``ema``.

    Called like a branch, it gives (z1, z2, n1, n2): n1, n2 are None when the method reads no negatives, and the
    very tensors z1, z2 when both branches are the same. ``network`` / ``forward`` are the momentum encoder's (the
    checkpoint's ``target``, what ``--compile`` compiles)."""

    def __init__(self, positive: str, negative: str | None, online: nn.Module, cfg) -> None:
        self.positive = make_branch(positive, online, cfg)
        if negative is None or negative == positive:
            self.negative = self.positive if negative is not None else None
        elif negative == "ema" or positive == "ema":
            ema = self.positive if positive == "ema" else make_branch("ema", online, cfg)
            self.negative = ema if negative == "ema" else make_branch(negative, online, cfg)
            self.positive = ema if positive == "ema" else self.positive
        else:
            self.negative = make_branch(negative, online, cfg)
        self.branches = [b for b in dict.fromkeys((self.positive, self.negative)) if b is not None]
        self.mode = positive

    @property
    def ema(self) -> MomentumEncoder | None:
        return next((b for b in self.branches if isinstance(b, MomentumEncoder)), None)

    @property
    def network(self) -> nn.Module | None:
        return self.ema.network if self.ema is not None else None

    @property
    def forward(self) -> nn.Module | None:
        return self.ema.forward if self.ema is not None else None

    @forward.setter
    def forward(self, module: nn.Module) -> None:
        self.ema.forward = module

    def __call__(self, x1, x2, f1, f2):
        z1, z2 = self.positive(x1, x2, f1, f2)
        if self.negative is None:
            return z1, z2, None, None
        if self.negative is self.positive:
            return z1, z2, z1, z2
        n1, n2 = self.negative(x1, x2, f1, f2)
        return z1, z2, n1, n2

    def after_step(self, online: nn.Module, step: int, total: int) -> None:
        for b in self.branches:
            b.after_step(online, step, total)

    def record(self, step: int, total: int) -> dict:
        return {k: v for b in self.branches for k, v in b.record(step, total).items()}


def make_target(online: nn.Module) -> nn.Module:
    """An exact copy of the online encoder that gradients never reach."""
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


declare(
    Setting("gamma_a", 0.996, "EMA rate γ_a of the target network (byol): θ_a ← γ_a θ_a + (1 − γ_a) θ", "Method",
            float, paper="0.996", low=0.0, high=1.0),
    Setting("ema_schedule", "constant", "schedule of γ_a: constant (the paper) | cosine (γ_a → 1, BYOL)", "Method", str,
            paper="constant", choices=("constant", "cosine")),
)
