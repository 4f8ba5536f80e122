"""What every objective sees and offers: the step's :class:`Views`, the :class:`Objective` base, and the detached
surrogate that turns a gradient form into something autograd can push through the network.

Unified-gradient notation (Tao et al. 2022, unigrad.md A1): u1, u2 are the normalised online outputs of the two views
(l2, or BN-standardised for Barlow Twins' own form); the positive target of u1 is the other view's target u2^t, the
negatives come from a negative branch (online, stop-gradient copy or momentum encoder). Every method's gradient on
u1 reads dL/du1 = -u2^t + lambda * G_neg(u1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Views:
    """One step's features, each (B, d) fp32, B = this rank's batch.

    p1, p2: the online predictions (with gradient; the projector outputs f themselves when the method has no
        predictor);
    f1, f2: the online projector outputs (with gradient);
    z1, z2: the positive targets, made by the positive branch (--positive-target): detached under stop-gradient and
        from the momentum encoder, f itself (with gradient) for ``online``;
    n1, n2: the negatives' features of both views from the negative branch (--negative-target), or None when the
        method uses none (BYOL, SimSiam); the same tensors as z1, z2 when both branches are the same;
    locals: online outputs (B, d) of the multi-crop local views, each of which has the mean of the two global
        targets as its positive (empty without --multi-crop);
    mix: CutMix's (perm, lam) when the online views were mixed (None otherwise): the positive target of a mixed
        row i is lam * z[i] + (1 - lam) * z[perm[i]], with lam (B,) the kept fraction of image i;
    reduce: sums a tensor over the ranks (identity on one process); world: the number of ranks.
    """

    p1: torch.Tensor
    p2: torch.Tensor
    f1: torch.Tensor
    f2: torch.Tensor
    z1: torch.Tensor
    z2: torch.Tensor
    n1: torch.Tensor | None = None
    n2: torch.Tensor | None = None
    locals: list[torch.Tensor] = field(default_factory=list)
    mix: tuple[torch.Tensor, torch.Tensor] | None = None
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    gather: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    world: int = 1

    @classmethod
    def of(cls, f1: torch.Tensor, f2: torch.Tensor | None = None) -> Views:
        """Views of online outputs alone (p = f, targets f), e.g. for a measurement outside a step."""
        f2 = f1 if f2 is None else f2
        return cls(f1, f2, f1, f2, f1, f2, f1, f2)

    def detached(self) -> Views:
        """The same views with every tensor detached (what a measurement reads)."""
        def det(t):
            return None if t is None else t.detach()
        return Views(det(self.p1), det(self.p2), det(self.f1), det(self.f2), det(self.z1), det(self.z2),
                     det(self.n1), det(self.n2), [t.detach() for t in self.locals],
                     None if self.mix is None else (self.mix[0], self.mix[1].detach()), self.reduce, self.gather,
                     self.world)


def mixed_target(z: torch.Tensor, mix: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The positive target of CutMix-ed rows: lam_i z_i + (1 - lam_i) z_perm(i); z itself without mixing."""
    if mix is None:
        return z
    perm, lam = mix
    return lam[:, None] * z + (1.0 - lam[:, None]) * z[perm]


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit l2 norm (B, d) -> (B, d)."""
    return F.normalize(x, dim=-1)


NORMS = ("l2", "none")
"""The output normalisations of the unified-family objectives (Barlow Twins adds ``bn``): ``l2`` unit rows (the
papers' networks), ``none`` the raw outputs (the linear model, where :mod:`ssltheory.theory.unified` holds)."""


def normalised(x: torch.Tensor, norm: str) -> torch.Tensor:
    """Rows of x (B, d) as ``norm`` says: :func:`unit` for ``l2``, x itself for ``none``."""
    return unit(x) if norm == "l2" else x


def surrogate(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The detached surrogate mean_i <g_i, u_i> (unigrad.md A2): its gradient in u is g / B, so backward pushes the
    gradient form g (B, d) through the normalisation, the projector and the encoder."""
    return (g.detach() * u).sum(dim=-1).mean()


def grad_cosine(a: torch.Tensor, b: torch.Tensor, u: torch.Tensor | None = None) -> float:
    """Mean over rows of cos(a_i, b_i): how well a simplified gradient a (B, d) follows the exact one b.

    With ``u`` (B, d), the unit outputs both are gradients on, only their parts tangent to u_i are compared: the
    l2 normalisation removes the radial part, so that is what reaches the network (the cosine of the gradients on
    the unnormalised outputs)."""
    a, b = a.double(), b.double()
    if u is not None:
        r = F.normalize(u.double(), dim=-1)
        a, b = a - (a * r).sum(-1, keepdim=True) * r, b - (b * r).sum(-1, keepdim=True) * r
    return float(F.cosine_similarity(a, b, dim=-1).mean())


def balance_ratio(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """mean_i ||lambda G_neg(u1_i)|| / ||u2_i^t||: the balance of the two terms of a unified gradient (B, d) each."""
    return float((negative.double().norm(dim=-1) / positive.double().norm(dim=-1).clamp_min(1e-12)).mean())


class Objective(nn.Module):
    """Base of the objectives: ``forward(views) -> loss`` (0-d, this rank's batch) is what the step minimises.

    ``measure(views)`` (views detached, at measurement steps only) returns what the method's theory reads off a
    step, any of: ``method_F`` (the d x d matrix whose spectrum the method's negative gradient sees, trace 1 under
    l2 normalisation), ``balance_ratio`` (:func:`balance_ratio`), ``adaptive_balance`` (BYOL-DirectPred's mean
    per-sample lambda_i), ``grad_cosine`` (:func:`grad_cosine` of the simplified gradient against the exact one it
    replaces). State kept across steps (a running F, a queue of keys) lives in buffers, so it is checkpointed.

    Class attributes: ``cutmix`` / ``multi_crop``: whether the objective reads ``views.mix`` / ``views.locals``;
    ``graph_safe``: whether a step through it may be captured once as a CUDA graph and replayed (``--cuda-graph``):
    False for an objective that keeps state across steps outside the captured tensors (a running F, a queue of keys)
    or reads a second branch the captured step does not return. The step reads this; nothing infers it.
    """

    cutmix = False
    multi_crop = False
    graph_safe = True

    def forward(self, v: Views) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def measure(self, v: Views) -> dict:
        return {}
