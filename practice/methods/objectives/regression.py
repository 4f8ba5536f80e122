"""BYOL's and SimSiam's objective: each view's prediction regresses the other view's target.

The losses are pure functions of p (the online predictions) and z (the targets, used as the target branch made
them: detached under stop-gradient or from a momentum encoder), p, z: (B, d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssltheory.practice.methods.objectives.base import Objective, Views


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL/SimSiam regression loss 2 - 2 cos(p, z), averaged over the batch; p, z: (B, d). Range [0, 4].

    Equal to ||p/|p| - z/|z|||^2. ``z`` is used as given: detach it for the stop-gradient.
    """
    return (2.0 - 2.0 * F.cosine_similarity(p, z, dim=-1)).mean()


def l2(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The linear model's loss (Eq. 1): 1/2 ||p - z||^2 summed over the d features, averaged over the batch."""
    return 0.5 * (p - z).pow(2).sum(dim=-1).mean()


def symmetric_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                   kind: str = "cosine") -> torch.Tensor:
    """Both view orders: ``cosine`` gives L(p1, z2) + L(p2, z1) (the official code's, up to its constant);
    ``l2`` gives their mean, whose expected gradient is exactly that of Eq. 1, so lr maps to the ODE's alpha."""
    if kind == "l2":
        return 0.5 * (l2(p1, z2) + l2(p2, z1))
    return negative_cosine(p1, z2) + negative_cosine(p2, z1)


class Regression(Objective):
    """BYOL's and SimSiam's objective: each view's prediction regresses the other view's target
    (:func:`symmetric_loss`; ``kind`` cosine for networks, l2 for the theory's linear model). No state."""

    def __init__(self, kind: str = "cosine") -> None:
        super().__init__()
        self.kind = kind

    def forward(self, v: Views) -> torch.Tensor:
        return symmetric_loss(v.p1, v.p2, v.z1, v.z2, self.kind)
