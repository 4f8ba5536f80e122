"""The asymmetric family's gradient forms (unigrad.md A2.2, A3): BYOL's gradient with a DirectPred linear predictor
(Table 2 (d), a per-sample adaptive balance factor) and its simplification UniGrad (Table 2 (e), a constant one).

Both read a running correlation F of the negatives (:class:`RunningF`), d x d, trace 1 under l2 normalisation:

    tmp = (n1^T n1 + n2^T n2) / (2B),  n = unit(negative features of both views),  tmp <- reduce(tmp) / world
    F   = tmp on the first step, else rho F + (1 - rho) tmp          (detached, updated BEFORE it is used)

With u = unit(p) the online outputs (B, d) (p = f: no predictor) and t the other view's unit target:

    UniGrad:              g1 = -t2 + lam F u1                                  (constant lam, 100)
    DirectPred gradient:  g1 = (-W_p t2 + lambda_i M u1) / ||W_p u1||,      lambda_i = u1^T W_p t2 / (u1^T M u1)
                          W_p = U diag(max(sqrt(s / s_max) + eps, 1e-4)) U^T,  M = F / s_max + eps^2 I

and the step minimises the detached surrogate 0.5 (mean_i <g1_i, u1_i> + mean_i <g2_i, u2_i>)
(:func:`~.base.surrogate`). Each objective also has a ``loss`` form, an explicit loss with the same gradient
(UniGrad) or the loss the gradient approximates (DirectPred: -cos(W_p u1, t2)). The targets are detached in both
forms: a gradient form can only express the online side's gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from ssltheory.practice.measure.running import RunningCorrelation
from ssltheory.practice.methods.objectives.base import (
    NORMS,
    Objective,
    Views,
    balance_ratio,
    grad_cosine,
    mixed_target,
    normalised,
    surrogate,
    unit,
)
from ssltheory.practice.methods.predictors import directpred_eigh
from ssltheory.theory.modes import P_FLOOR

FORMS = ("gradient", "loss")
"""The forms both objectives offer: ``gradient`` (the detached surrogate of g) and ``loss`` (autograd)."""

COMPARE_EPS = 0.3
"""The eps of the DirectPred gradient that UniGrad's ``grad_cosine`` compares against (the official config's)."""


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 for half-precision features, their own dtype for fp32 / fp64."""
    return torch.promote_types(x.dtype, torch.float32)


def _no_autocast(x: torch.Tensor) -> AbstractContextManager:
    """Autocast off on x's device, so that the d x d products run in the dtype they are given."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    return form


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def batch_correlation(n1: torch.Tensor, n2: torch.Tensor, norm: str = "l2") -> torch.Tensor:
    """This rank's tmp = (unit(n1)^T unit(n1) + unit(n2)^T unit(n2)) / (2B), (d, d) float32 from n1, n2 (B, d).

    Computed in fp32 with autocast off, not centred; trace(tmp) = 1 (rows of unit norm). ``norm`` "none": the raw
    rows, tmp = (n1^T n1 + n2^T n2) / (2B) (the linear model's F, :mod:`ssltheory.theory.unified`)."""
    with _no_autocast(n1):
        a, b = normalised(n1.detach().float(), norm), normalised(n2.detach().float(), norm)
        return (a.T @ a + b.T @ b) / (2 * a.shape[0])


class RunningF(RunningCorrelation):
    """The running correlation F of the negatives (unigrad.md A3 steps 1-3), shared by both objectives: the one
    running correlation (:class:`~ssltheory.practice.measure.running.RunningCorrelation`) in float32, each batch's
    moment :func:`batch_correlation` of the rows normalised by ``norm``. Buffers ``F`` (d, d) and ``initialised``."""

    def __init__(self, dim: int, rho: float = 0.99, norm: str = "l2") -> None:
        super().__init__(dim, rho, dtype=torch.float32)
        self.norm = _check_norm(norm)

    @torch.no_grad()
    def update(self, n1: torch.Tensor, n2: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
               world: int = 1) -> torch.Tensor:
        """Fold the batch in and return the new F (d, d) float32, detached.

        tmp = reduce(:func:`batch_correlation` (n1, n2)) / world (``reduce`` sums over the ranks: the global batch's
        correlation); F = tmp on the first call, else rho F + (1 - rho) tmp.
        """
        tmp = batch_correlation(n1, n2, self.norm)
        if reduce is not None:
            tmp = reduce(tmp) / world
        return self.fold(tmp).clone()

    @torch.no_grad()
    def current(self, n1: torch.Tensor, n2: torch.Tensor) -> torch.Tensor:
        """F as it stands (no update; for measurements), or this rank's batch correlation before the first update."""
        if bool(self.initialised):
            return self.F.to(n1.device)
        return batch_correlation(n1, n2, self.norm)


def _negatives(v: Views) -> tuple[torch.Tensor, torch.Tensor]:
    """The features F is built from: the negative branch's n1, n2, or the targets z1, z2 when the step gives none
    (the official code's choice, F from the momentum branch). Never CutMix-ed: F sees normal images only."""
    n1 = v.n1 if v.n1 is not None else v.z1
    n2 = v.n2 if v.n2 is not None else v.z2
    return n1.detach(), n2.detach()


def directpred_matrices(F: torch.Tensor, eps: float, floor: float = P_FLOOR
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DirectPred's predictor and its approximate square from F (d, d): (W_p, M, W_p^2), each (d, d) float64.

    F_sym = (F + F^T) / 2 = U diag(s) U^T, s_max = max s (:func:`..predictors.directpred_eigh`, the one home);
    W_p = U diag(p) U^T with p_j = max(sqrt(s_j / s_max) + eps, floor) (:func:`~ssltheory.theory.modes.directpred_p`);
    M = F_sym / s_max + eps^2 I (W_p^2 = F/s_max + 2 eps sqrt(F/s_max) + eps^2 I without the cross term, and
    without the floor); W_p^2 = U diag(p^2) U^T, exact. F = 0 gives ratio 0: W_p = max(eps, floor) I, M = eps^2 I.
    """
    Fs, U, s_max, p = directpred_eigh(F, eps, floor)
    eye = torch.eye(F.shape[0], dtype=Fs.dtype, device=Fs.device)
    return (U * p) @ U.T, Fs / s_max + eps ** 2 * eye, (U * p * p) @ U.T


def directpred_gradient(u: torch.Tensor, t: torch.Tensor, W: torch.Tensor, M: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """g_i = (-W t_i + lambda_i M u_i) / ||W u_i||, lambda_i = u_i^T W t_i / (u_i^T M u_i): (g (B, d), lambda (B,)).

    u, t: (B, d) unit rows; W, M: (d, d) symmetric, in u's dtype. With M = W^T W = W^2 this is exactly
    d/du_i of -cos(W u_i, t_i):
        d/du [-(W u)^T t / ||W u||] = -W^T t / ||W u|| + (u^T W^T t) W^T W u / ||W u||^3
                                    = (-W^T t + lambda W^T W u) / ||W u||,   lambda = u^T W^T t / (u^T W^T W u)
    (t of unit norm); with M = F / s_max + eps^2 I it is BYOL-DirectPred's gradient form (unigrad.md A2.2). For
    any M, u_i^T g_i = 0 by lambda_i's definition: g has no radial part, all of it passes the normalisation.
    """
    tiny = torch.finfo(u.dtype).tiny
    Wt, Mu = t @ W, u @ M  # rows W t_i, M u_i (W, M symmetric)
    lam = (u * Wt).sum(-1) / (u * Mu).sum(-1).clamp(min=tiny)
    norm = (u @ W).norm(dim=-1, keepdim=True).clamp(min=tiny)
    return (-Wt + lam[:, None] * Mu) / norm, lam


class UniGrad(Objective):
    """UniGrad (unigrad.md A3; Table 2 (e)): dL/du1 = -t2 + lam F u1, F the running correlation of the negatives.

    ``form``: ``gradient`` (the official code: surrogate of g1 = -t2 + lam u1 F, g2 likewise) or ``loss``, the
    explicit loss with the same gradient, mean_i [-u1_i^T t2_i + (lam/2) u1_i^T F u1_i] symmetrised, F detached
    (its value differs from the official code's logged -cos + lam u^T F u; the gradients agree).

    u1 = unit(p1), u2 = unit(p2) (p = f: no predictor), (B, d). Positives t2 = mixed_target(unit(z2), mix), t1
    likewise (detached): under CutMix the positive of a mixed row i is lam_i unit(z_i) + (1 - lam_i) unit(z_perm(i)),
    the mix of the normal images' positive targets by the mixing ratio (Table 4), NOT re-normalised, which is the
    gradient of lam_i (-cos(u, t_i)) + (1 - lam_i) (-cos(u, t_perm(i))); F comes from the unmixed negatives.
    Multi-crop: each local output l (B, d) has u = unit(l) and positive (unit(z1) + unit(z2)) / 2, the average of the
    two (unmixed) global targets, also NOT re-normalised: the gradient of the mean of -cos(u, t) over both global
    targets. F comes from the global views only. The loss is the mean over the 2 + len(locals) crops.

    ``norm`` "none" replaces every unit(.) above by the raw rows (F = E[n n^T] not trace-normalised): the unified
    gradient of the linear model, whose flow is (U1) of :mod:`ssltheory.theory.unified`.
    """

    cutmix = True
    multi_crop = True
    graph_safe = False  # the running F of the negatives, kept across steps

    def __init__(self, dim: int, lam: float = 100.0, rho: float = 0.99, form: str = "gradient",
                 norm: str = "l2") -> None:
        super().__init__()
        self.dim, self.lam, self.form, self.norm = dim, float(lam), _check_form(form), _check_norm(norm)
        self.running = RunningF(dim, rho, norm)

    @property
    def F(self) -> torch.Tensor:
        """The running correlation (d, d) float32."""
        return self.running.F

    def _crops(self, v: Views, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(u, positive) pairs, each (B, d), for the two global views and every local crop."""
        def n(x: torch.Tensor) -> torch.Tensor:
            return normalised(x.to(dtype), self.norm)

        z1, z2 = n(v.z1.detach()), n(v.z2.detach())
        crops = [(n(v.p1), mixed_target(z2, v.mix)), (n(v.p2), mixed_target(z1, v.mix))]
        if v.locals:
            both = 0.5 * (z1 + z2)
            crops += [(n(loc), both) for loc in v.locals]
        return crops

    def _term(self, u: torch.Tensor, t: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
        """One crop's loss: surrogate of g = -t + lam u F, or mean_i [-u_i^T t_i + (lam/2) u_i^T F u_i]."""
        uF = u @ F
        if self.form == "gradient":
            return surrogate(-t + self.lam * uF, u)
        return (-(u * t).sum(-1) + 0.5 * self.lam * (uF * u).sum(-1)).mean()

    def forward(self, v: Views) -> torch.Tensor:
        """The step's loss (0-d): F updated from this batch's negatives first, then the mean over crops of
        :meth:`_term`."""
        dtype = _compute_dtype(v.p1)
        with _no_autocast(v.p1):
            F = self.running.update(*_negatives(v), v.reduce, v.world).to(dtype)
            return torch.stack([self._term(u, t, F) for u, t in self._crops(v, dtype)]).mean()

    @torch.no_grad()
    def measure(self, v: Views) -> dict:
        """``method_F`` F (d, d) (as it stands: no update), ``balance_ratio`` mean_i ||lam F u1_i|| / ||t2_i||, and
        ``grad_cosine``: mean_i cos(g1_i, g1_i^DP), g1^DP the BYOL-DirectPred adaptive gradient (eps = 0.3) on the same
        u1, t2 and F, i.e. how far the simplification (d) -> (e) of Table 2 (W_p -> I in the positive term, adaptive
        lambda_i M -> constant lam F) turns the gradient. Their parts tangent to u1 are compared (the radial part
        t2^T u1 + lam u1^T F u1 of g1 is removed by the normalisation; g1^DP has none). No ``grad_cosine`` under
        ``norm`` "none"."""
        dtype = _compute_dtype(v.p1)
        with _no_autocast(v.p1):
            F = self.running.current(*_negatives(v))
            (u1, t2), _ = self._crops(v, dtype)[:2]
            neg = self.lam * (u1 @ F.to(dtype))
            out = {"method_F": F.detach().clone(), "balance_ratio": balance_ratio(t2, neg)}
            if self.norm == "none":  # DirectPred's gradient lives on unit rows: no comparison for raw outputs
                return out
            W, M, _ = directpred_matrices(F, COMPARE_EPS)
            g_dp, _ = directpred_gradient(u1, t2, W.to(dtype), M.to(dtype))
            return {**out, "grad_cosine": grad_cosine(-t2 + neg, g_dp, u1)}


class DirectPredGradient(Objective):
    """BYOL's gradient with a DirectPred linear predictor (unigrad.md A2.2; Table 2 (d)), no learned predictor.

    F is the running correlation of the negatives (:class:`RunningF`, updated first); from it
    (:func:`directpred_matrices`) W_p = U diag(max(sqrt(s/s_max) + eps, 1e-4)) U^T and M = F/s_max + eps^2 I.

    ``form``: ``gradient``: g1_i = (-W_p t2_i + lambda_i M u1_i) / ||W_p u1_i||, lambda_i = u1_i^T W_p t2_i /
    (u1_i^T M u1_i) (an adaptive, per-sample balance factor), g2 likewise, loss = 0.5 (surrogate(g1, u1) +
    surrogate(g2, u2)); ``loss``: 0.5 mean_i [-cos(W_p u1_i, t2_i) - cos(W_p u2_i, t1_i)], W_p a fixed predictor
    set from F (detached).

    Derivation (:func:`directpred_gradient`): d/du1 of -cos(W u1, u2) = (-W^T u2 + lambda W^T W u1) / ||W u1|| with
    lambda = u1^T W^T u2 / (u1^T W^T W u1). The gradient form replaces W^T W = W_p^2 = F/s_max + 2 eps sqrt(F/s_max)
    + eps^2 I by M, dropping the cross term, so both forms have the same gradient when eps = 0 (up to the 1e-4
    floor on p_j, i.e. modes with s_j / s_max < 1e-8).

    u1 = unit(p1), u2 = unit(p2) (p = f), t1 = unit(z1), t2 = unit(z2), detached, all (B, d). No CutMix, no
    multi-crop.
    """

    cutmix = False
    multi_crop = False
    graph_safe = False  # the running F of the negatives, kept across steps

    def __init__(self, dim: int, eps: float = 0.3, rho: float = 0.99, form: str = "gradient") -> None:
        super().__init__()
        self.dim, self.eps, self.form = dim, float(eps), _check_form(form)
        self.running = RunningF(dim, rho)

    @property
    def F(self) -> torch.Tensor:
        """The running correlation (d, d) float32."""
        return self.running.F

    def _term(self, u: torch.Tensor, t: torch.Tensor, W: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        if self.form == "gradient":
            return surrogate(directpred_gradient(u, t, W, M)[0], u)
        return -torch.nn.functional.cosine_similarity(u @ W, t, dim=-1).mean()

    def forward(self, v: Views) -> torch.Tensor:
        """The step's loss (0-d): F updated first, W_p and M from it, then the symmetrised :meth:`_term`."""
        dtype = _compute_dtype(v.p1)
        with _no_autocast(v.p1):
            F = self.running.update(*_negatives(v), v.reduce, v.world)
            W, M, _ = (m.to(dtype) for m in directpred_matrices(F, self.eps))
            u1, u2 = unit(v.p1.to(dtype)), unit(v.p2.to(dtype))
            t1, t2 = unit(v.z1.detach().to(dtype)), unit(v.z2.detach().to(dtype))
            return 0.5 * (self._term(u1, t2, W, M) + self._term(u2, t1, W, M))

    @torch.no_grad()
    def measure(self, v: Views) -> dict:
        """``method_F`` F (d, d) (as it stands: no update), ``adaptive_balance`` mean_i lambda_i, ``balance_ratio``
        mean_i ||lambda_i M u1_i|| / ||W_p t2_i||, and ``grad_cosine`` mean_i cos(g1_i, g1_i^exact), g1^exact the exact
        gradient of -cos(W_p u1, t2) (W_p^2 in place of M; Fig. 3(d))."""
        dtype = _compute_dtype(v.p1)
        with _no_autocast(v.p1):
            F = self.running.current(*_negatives(v))
            W, M, W2 = (m.to(dtype) for m in directpred_matrices(F, self.eps))
            u1, t2 = unit(v.p1.to(dtype)), unit(v.z2.to(dtype))
            g, lam = directpred_gradient(u1, t2, W, M)
            exact, _ = directpred_gradient(u1, t2, W, W2)
            return {"method_F": F.detach().clone(), "adaptive_balance": float(lam.double().mean()),
                    "balance_ratio": balance_ratio(t2 @ W, lam[:, None] * (u1 @ M)),
                    "grad_cosine": grad_cosine(g, exact, u1)}
