"""The decorrelation family (unigrad.md A1, A6 Table 2 rows (f)-(j)): Barlow Twins and VICReg, each in three forms.

- ``loss``: autograd through the method's own loss (Zbontar et al. 2021; Bardes et al. 2022);
- ``gradient``: the exact gradient of that loss written out (rows (f) Barlow Twins*, (i) VICReg*), pushed through the
  network by the detached surrogate of :func:`~.base.surrogate`; with constant (detached) targets its parameter
  gradients are autograd's of the ``loss`` form;
- ``unified``: the paper's simplification -t + lambda G_neg(u) (rows (g), (h) and (j)).

Conventions. ``v.p1``, ``v.p2`` (B, d) are the online outputs f (no predictor: p = f), ``v.z1``, ``v.z2`` the positive
targets t, ``v.n1``, ``v.n2`` the negative branch's features of both views (``z`` when None). Every form is symmetric,

    loss = 0.5 * (L(f1, z2) + L(f2, z1)),

L(online, target) being one view order. A "per-sample gradient" g (B, d) below is N dL/du for the N rows of the
batch the statistics are taken over: the surrogate mean_i <g_i, u_i> of B = N / world rows, averaged over the ranks
by data-parallel training, then gives every row exactly dL/du_i = g_i / N (the released code's scale).

Batch statistics and several ranks (``v.world`` > 1, equal batches of B rows per rank, N = B * world):

- the ``loss`` forms take BN moments, C and covariances over this rank's batch (``v.reduce`` is not differentiable):
  data-parallel training then minimises the mean over ranks of per-rank losses;
- the ``gradient`` and ``unified`` forms are detached, so they take them over the global batch through ``v.reduce``
  (moments, C, covariances: sums of d-vectors and d x d matrices), and push the gradient through the online batch
  norm analytically (:func:`bn_backward`, means over the global batch): exactly the gradient of the global-batch
  loss. On one process (the tests) ``loss`` and ``gradient`` agree to rounding.

The gradient forms read the targets as constants: under an online target (``z`` is f with gradient) they drop the
target's own path, which is exactly half the ``loss`` form's gradient for both methods (Barlow Twins: L(a, b) =
L(b, a); VICReg: its per-view loss weighs the regulariser by whether the target trains, :func:`vicreg_loss`).
Autocast is off inside every form.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace

import torch
import torch.nn.functional as F

from ssltheory.practice.methods.objectives.base import (
    Objective,
    Views,
    balance_ratio,
    grad_cosine,
    normalised,
    surrogate,
)

FORMS = ("loss", "gradient", "unified")
"""The forms every objective here offers."""

BN_EPS = 1e-5
"""Barlow Twins' batch norm eps (BatchNorm1d's default): a = (x - mean) / sqrt(var + BN_EPS), var biased (over N)."""

VAR_EPS = 1e-4
"""VICReg's eps inside the standard deviation sqrt(Var + VAR_EPS), Var unbiased (over N - 1), as Bardes et al."""

DEFAULT_LAMBDA: dict[tuple[str, str, str], float] = {
    ("barlowtwins", "loss", "bn"): 5e-3,  # off-diagonal weight (Zbontar et al.; Table 2 (f))
    ("barlowtwins", "gradient", "bn"): 5e-3,  # row (f)
    ("barlowtwins", "unified", "bn"): 5e-3,  # row (g)
    ("barlowtwins", "unified", "l2"): 50.0,  # row (h), the released config's lambd
    ("vicreg", "loss", "none"): 1.0,  # covariance coefficient nu (Bardes et al.: 25, 25, 1)
    ("vicreg", "gradient", "none"): 1.0,  # row (i) in our parametrisation: the loss's own coefficient
    ("vicreg", "unified", "l2"): 25.0,  # row (j)
    ("barlowtwins", "unified", "none"): 1.0,  # raw outputs (the linear model): lambda sets s* = 1 / lambda only
    ("vicreg", "unified", "none"): 1.0,
}
"""The paper's (or the loss's) lambda per (method, form, norm). For Barlow Twins lambda is the off-diagonal weight in
every form; for VICReg it is the covariance coefficient nu in the loss and gradient forms (the invariance and variance
coefficients are 25 and 25) and the balance factor of -t + lambda F u in the unified form. Table 2's 4e-5 for row (i)
belongs to the paper's own parametrisation of the VICReg gradient, which is not released; ours is the loss's."""

NORMS = {"barlowtwins": {"loss": ("bn",), "gradient": ("bn",), "unified": ("bn", "l2", "none")},
         "vicreg": {"loss": ("none",), "gradient": ("none",), "unified": ("l2", "none")}}
"""The normalisations each (method, form) accepts; the first is its default. ``none`` in the unified forms: the raw
outputs of the linear model, whose flows are (U1) (VICReg) and (U2) (Barlow Twins) of
:mod:`ssltheory.theory.unified`. VICReg's loss and gradient forms never normalise (also ``none``)."""


def default_lambda(method: str, form: str, norm: str | None = None) -> float:
    """The paper's default lambda of ``method`` ("barlowtwins" or "vicreg"), ``form`` and ``norm`` (None: the form's
    default normalisation, :data:`NORMS`)."""
    if method not in NORMS or form not in NORMS[method]:
        raise ValueError(f"no decorrelation objective {method!r} with form {form!r}")
    return DEFAULT_LAMBDA[(method, form, norm or NORMS[method][form][0])]


def _check(method: str, form: str, norm: str, lam: float | None) -> float:
    """Validated lambda (the default of ``method``, ``form``, ``norm`` when None)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if norm not in NORMS[method][form]:
        raise ValueError(f"{method} form {form!r} takes norm in {NORMS[method][form]}, got {norm!r} (only the "
                         "unified Barlow Twins form chooses its normalisation)")
    lam = default_lambda(method, form, norm) if lam is None else float(lam)
    if not (lam >= 0.0 and lam < float("inf")):
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    return lam


def _no_autocast(x: torch.Tensor) -> AbstractContextManager:
    """Autocast off on x's device: the d x d products run in the features' own dtype (fp32 from the step)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def _rows(x: torch.Tensor, v: Views) -> int:
    """N, the global batch: this rank's rows times the number of ranks (the trainer splits the batch evenly). A python
    number, so nothing waits for the device (CUDA graphs)."""
    return x.shape[0] * v.world


def _local(v: Views) -> Views:
    """The views as one process sees them (reduce the identity, world 1): ``measure`` reads this rank's batch and
    calls no collective, so it may run on one rank alone."""
    return replace(v, reduce=lambda t: t, world=1)


def _negatives(v: Views) -> tuple[torch.Tensor, torch.Tensor]:
    """The negative branch's (n1, n2), detached; the positive targets when the step has no negative branch."""
    n1, n2 = (v.z1, v.z2) if v.n1 is None or v.n2 is None else (v.n1, v.n2)
    return n1.detach(), n2.detach()


# ---------------------------------------------------------------------------------------------------- batch statistics
def standardise(x: torch.Tensor, eps: float = BN_EPS) -> torch.Tensor:
    """Barlow Twins' batch norm without affine over this batch (differentiable): x (B, d) -> (x - mean) /
    sqrt(var + eps), mean and biased var per feature over the B rows (BatchNorm1d in training mode)."""
    mu = x.mean(dim=0, keepdim=True)
    var = (x - mu).pow(2).mean(dim=0, keepdim=True)
    return (x - mu) * torch.rsqrt(var + eps)


def global_mean(x: torch.Tensor, v: Views) -> torch.Tensor:
    """Per-feature mean over the global batch of a detached x (B, d) -> (1, d): reduce(sum_i x_i) / N."""
    return v.reduce(x.sum(dim=0, keepdim=True)) / _rows(x, v)


def global_standardise(x: torch.Tensor, v: Views, eps: float = BN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`standardise` over the global batch for a detached x (B, d): (a (B, d), 1 / sqrt(var + eps) (1, d))."""
    xc = x - global_mean(x, v)
    inv = torch.rsqrt(global_mean(xc * xc, v) + eps)
    return xc * inv, inv


def bn_backward(g: torch.Tensor, a: torch.Tensor, inv: torch.Tensor, v: Views) -> torch.Tensor:
    """The gradient through the batch norm a = (x - mu) inv, inv = (var + eps)^(-1/2) (global batch, biased var):

        dL/dx_n = inv * (G_n - mean_m G_m - a_n * mean_m (G_m * a_m))          (per feature, G = dL/da)

    from da_m/dx_n = inv (delta_mn - 1/N - a_m a_n / N). Linear in G, so a per-sample gradient g = N dL/da (B, d)
    maps to the per-sample N dL/dx (B, d). Means over the global batch through ``v.reduce``."""
    return inv * (g - global_mean(g, v) - a * global_mean(g * a, v))


def l2_backward(g: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The gradient through u = f / |f| (rows (B, d)): dL/df = (I - u u^T) dL/du / |f|."""
    norm = f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    u = f / norm
    return (g - u * (g * u).sum(dim=-1, keepdim=True)) / norm


# ---------------------------------------------------------------------------------------------------- Barlow Twins
def barlow_twins_loss(f: torch.Tensor, t: torch.Tensor, lam: float = 5e-3) -> torch.Tensor:
    """Barlow Twins' loss of one view order (this rank's batch), differentiable in f and t (B, d):

        a = standardise(f), b = standardise(t),  C = a^T b / B  (d, d),
        L = sum_i (C_ii - 1)^2 + lam sum_{i != j} C_ij^2.

    L(f, t) = L(t, f) (C -> C^T keeps the diagonal and the off-diagonal squares)."""
    a, b = standardise(f), standardise(t)
    C = a.T @ b / a.shape[0]
    diag = torch.diagonal(C)
    return (diag - 1.0).pow(2).sum() + lam * (C.pow(2).sum() - diag.pow(2).sum())


def barlow_twins_exact(a: torch.Tensor, b: torch.Tensor, lam: float, v: Views) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (f): the per-sample gradient g = N dL/da of :func:`barlow_twins_loss` with respect to the standardised
    online features a (B, d), b (B, d) the standardised target (both detached, global-batch statistics), and L's
    value. With C = a^T b / N (reduced over ranks), D = Diag(C):

        dL/dC = 2 (lam C + (1 - lam) D - I)  =>  g_n = N dL/da_n = 2 (lam C + (1 - lam) D - I) b_n
              = 2 [ -(I - (1 - lam) D) b_n  +  lam sum_m (b_n . b_m) / N  a_m ].

    Unified reading (unigrad.md A1): the positive gradient is -(I - (1 - lam) D) b_n (a diagonal matrix, -> -b_n when
    the views agree, D -> I), the negative one lam C b_n sums the other samples' online features a_m with weights
    (b_n . b_m) / N from the other view. Returns (g (B, d), L (0-d))."""
    C = v.reduce(a.T @ b) / _rows(a, v)
    diag = torch.diagonal(C)
    g = 2.0 * (-b + lam * (b @ C.T) + (1.0 - lam) * b * diag)
    value = (diag - 1.0).pow(2).sum() + lam * (C.pow(2).sum() - diag.pow(2).sum())
    return g, value


def barlow_twins_unified(t: torch.Tensor, n_own: torch.Tensor, n_other: torch.Tensor, lam: float,
                         v: Views) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (g)/(h): g_n = 2 (-t_n + lam C t_n), C = sum_j n_own_j n_other_j^T / N_neg (d, d, reduced over ranks).

    Row (f) with its positive-gradient matrix (I - (1 - lam) D) replaced by I and C taken from the negative branch
    (n_own: this view's negatives, n_other: the other view's); t (B, d) is the other view's normalised positive
    target, all detached and normalised alike (BN for (g), l2 for (h)). C t_n = sum_j (n_other_j . t_n) / N n_own_j,
    the released ``loss_barlow_twins_grad_mm``'s ``(z2m @ z2m_bank^T) @ z1_bank / N`` (with its factor 2, which is
    the loss's). Returns (g (B, d), C (d, d))."""
    C = v.reduce(n_own.T @ n_other) / _rows(n_own, v)
    return 2.0 * (-t + lam * (t @ C.T)), C


# ---------------------------------------------------------------------------------------------------- VICReg
def _variance_term(S: torch.Tensor) -> torch.Tensor:
    """mean_j relu(1 - S_j) of the standard deviations S (d,)."""
    return F.relu(1.0 - S).mean()


def _covariance_term(K: torch.Tensor) -> torch.Tensor:
    """sum_{i != j} K_ij^2 / d of a covariance K (d, d)."""
    return (K.pow(2).sum() - torch.diagonal(K).pow(2).sum()) / K.shape[0]


def vicreg_loss(f: torch.Tensor, t: torch.Tensor, sim: float = 25.0, std: float = 25.0,
                cov: float = 1.0, target_trains: bool | None = None) -> torch.Tensor:
    """One view order of VICReg (this rank's batch), differentiable in f and t (B, d):

        L(f, t) = sim * mse(f, t) + w R(f),  R(f) = std/2 * mean_j relu(1 - sqrt(Var(f)_j + 1e-4))
                                                      + cov * sum_{i != j} K(f)_ij^2 / d,

    with mse the mean over B x d (``F.mse_loss``), K(f) = (f - mean)^T (f - mean) / (B - 1) and Var = diag K
    (unbiased, as Bardes et al.), and R Bardes et al.'s regulariser of one branch: their loss is sim mse(x, y) + R(x)
    + R(y). Only the online argument f is regularised; w = 2 when the target trains (``target_trains``, by default
    whether t carries gradient), 1 when it is a constant. So in the symmetric 0.5 (L(f1, t2) + L(f2, t1)) each view's
    gradient has their balance, sim mse' : R': with an online target the objective is their loss exactly (each
    view's invariance gradient arrives through both orders, its regulariser through one, hence w = 2); with a
    stop-gradient or momentum target it is 0.5 x their gradient with the other branch held constant (w = 1; with
    w = 2 the regulariser would weigh twice theirs against the invariance term, as it did before issue 22)."""
    xc = f - f.mean(dim=0, keepdim=True)
    K = xc.T @ xc / (f.shape[0] - 1)
    S = torch.sqrt(torch.diagonal(K) + VAR_EPS)
    w = (2.0 if t.requires_grad else 1.0) if target_trains is None else (2.0 if target_trains else 1.0)
    return sim * F.mse_loss(f, t) + w * (0.5 * std * _variance_term(S) + cov * _covariance_term(K))


def vicreg_exact(f: torch.Tensor, t: torch.Tensor, sim: float, std: float, cov: float,
                 v: Views) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row (i): the per-sample gradient g = N dL/df of :func:`vicreg_loss` with respect to the online features f
    (B, d), the target t (B, d) constant (so w = 1: L = sim mse + R(f), Bardes et al.'s loss with the other branch
    held constant), both detached, statistics over the global batch. With X = f - mean(f), K = X^T X / (N - 1)
    (reduced over ranks), K_off = K - Diag(K), S = sqrt(diag K + 1e-4), m = 1[S < 1]:

        invariance:  N d(sim mse)/df_n          = (2 sim / d) (f_n - t_n)
        variance:    N d(std/2 var-term)/df_n   = -(std N / (2 d (N - 1))) (m / S) * X_n
        covariance:  N d(cov cov-term)/df_n     = (4 cov N / (d (N - 1))) K_off X_n

    (the de-centring's Jacobian drops out: sum_n X_n = 0). Unified reading, divided by the positive coefficient
    2 sim / d: g ~ -t_n + f_n + (2 cov / sim) N/(N-1) K_off X_n - (std / (4 sim)) N/(N-1) (m / S) * X_n, the negative
    gradient K_off X_n = sum_m (X_m . X_n) / (N - 1) X_m - Diag(K) X_n: the other samples' (centred) features of the
    SAME view weighted by their correlation with X_n. Returns (g (B, d), L (0-d), K (d, d))."""
    N, d = _rows(f, v), f.shape[1]
    X = f - global_mean(f, v)
    K = v.reduce(X.T @ X) / (N - 1)
    S = torch.sqrt(torch.diagonal(K) + VAR_EPS)
    K_off = K - torch.diag_embed(torch.diagonal(K))
    g = ((2.0 * sim / d) * (f - t) - (std * N / (2.0 * d * (N - 1))) * (S < 1.0).to(f.dtype) / S * X
         + (4.0 * cov * N / (d * (N - 1))) * (X @ K_off))
    mse = v.reduce((f - t).pow(2).sum()) / (N * d)
    value = sim * mse + 0.5 * std * _variance_term(S) + cov * _covariance_term(K)
    return g, value, K


def vicreg_unified(u: torch.Tensor, t: torch.Tensor, n: torch.Tensor, lam: float,
                   v: Views) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (j): g_n = -t_n + lam F u_n, F = sum_j n_j n_j^T / N_neg (d, d, reduced over ranks, trace 1).

    u (B, d): l2-normalised online outputs; t (B, d): the other view's l2-normalised target; n (N_neg, d): this view's
    l2-normalised negatives, all detached. Derivation: row (i) with (1) l2 normalisation, so the invariance term
    sim |u - t|^2 / d gives -t (its u part lies along u, which the normalisation's Jacobian (I - u u^T) / |f|
    annihilates); (2) no de-centring, K -> F; (3) no variance term; and the covariance penalty on the whole matrix,
    c ||F||_F^2 = c / N^2 sum_{m,n} (u_m . u_n)^2, whose per-sample gradient is 4 c F u_n (with F from the negative
    branch): lam absorbs 4 c over the positive coefficient. The whole F rather than its off-diagonal part: with
    trace F = 1, ||F||_F^2 = sum of squared eigenvalues >= 1/d with equality iff F = I/d, so the full penalty also
    spreads the variance the dropped variance term guarded, whereas the off-diagonal one is blind to a collapse onto
    one coordinate axis (F = e_1 e_1^T has no off-diagonal entry). This is the UniGrad gradient with F of one view
    and no running average (unigrad.md A1 notes the shared F form). Returns (g (B, d), F (d, d))."""
    Fm = v.reduce(n.T @ n) / _rows(n, v)
    return -t + lam * (u @ Fm), Fm


# ---------------------------------------------------------------------------------------------------- objectives
class BarlowTwins(Objective):
    """Barlow Twins in the form ``form`` ("loss", "gradient" or "unified"), symmetric 0.5 (L(f1, z2) + L(f2, z1)).

    ``lam``: the off-diagonal weight (None: :data:`DEFAULT_LAMBDA`, 5e-3, or 50 for the unified l2 form);
    ``norm``: the unified form's normalisation, "bn" (row (g)), "l2" (row (h)) or "none" (the raw outputs of the
    linear model; the factor 2 of the released gradient is kept, so its flow is 2 x (U2)); the loss and gradient
    forms always standardise with BN ("bn"). Under an online target the loss form is the original L(f1, f2), since
    L(f2, f1) = L(f1, f2). No state.
    """

    name = "barlowtwins"

    @property
    def graph_safe(self) -> bool:  # type: ignore[override]
        """The unified form reads the negative branch besides the two views: not captured."""
        return self.form != "unified"

    def __init__(self, lam: float | None = None, form: str = "loss", norm: str = "bn") -> None:
        super().__init__()
        self.lam = _check(self.name, form, norm, lam)
        self.form, self.norm = form, norm

    def extra_repr(self) -> str:
        return f"form={self.form}, norm={self.norm}, lam={self.lam:g}"

    def forward(self, v: Views) -> torch.Tensor:
        """The step's 0-d loss. ``loss``: autograd through :func:`barlow_twins_loss`; ``gradient``: the surrogate of
        row (f) pushed through BN (:func:`bn_backward`), valued at the loss; ``unified``: the surrogate of row (g)
        / (h) (its value is the surrogate's)."""
        with _no_autocast(v.p1):
            if self.form == "loss":
                return 0.5 * (barlow_twins_loss(v.p1, v.z2, self.lam) + barlow_twins_loss(v.p2, v.z1, self.lam))
            if self.form == "gradient":
                surr, value = 0.0, 0.0
                for f, t in ((v.p1, v.z2), (v.p2, v.z1)):
                    a, inv = global_standardise(f.detach(), v)
                    b, _ = global_standardise(t.detach(), v)
                    g, val = barlow_twins_exact(a, b, self.lam, v)
                    surr = surr + 0.5 * surrogate(bn_backward(g, a, inv, v), f)
                    value = value + 0.5 * val
                return surr - surr.detach() + value.detach()
            # C = N^-1 sum_j v1_j n2_j^T: v1 this view's online outputs (detached), as the released code's z1_bank,
            # n2 the other view's negatives (unigrad.md A2.3)
            n1, n2 = (self._normalise(n, v) for n in _negatives(v))
            o1, o2 = (self._normalise(f.detach(), v) for f in (v.p1, v.p2))
            surr = 0.0
            for f, t, n_own, n_other in ((v.p1, v.z2, o1, n2), (v.p2, v.z1, o2, n1)):
                surr = surr + 0.5 * self._unified_surrogate(f, t, n_own, n_other, v)
            return surr

    def _normalise(self, x: torch.Tensor, v: Views) -> torch.Tensor:
        """A detached tensor (B, d) normalised as the unified form's ``norm`` says."""
        return global_standardise(x, v)[0] if self.norm == "bn" else normalised(x, self.norm)

    def _unified_grad(self, f: torch.Tensor, t: torch.Tensor, n_own: torch.Tensor, n_other: torch.Tensor, v: Views,
                      lam: float, norm: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The unified per-sample gradient w.r.t. the detached online f (B, d): (N dL/df, g w.r.t. u, the target
        t normalised, C)."""
        t = global_standardise(t, v)[0] if norm == "bn" else normalised(t, norm)
        g, C = barlow_twins_unified(t, n_own, n_other, lam, v)
        if norm == "bn":
            a, inv = global_standardise(f, v)
            return bn_backward(g, a, inv, v), g, t, C
        return (l2_backward(g, f) if norm == "l2" else g), g, t, C

    def _unified_surrogate(self, f: torch.Tensor, t: torch.Tensor, n_own: torch.Tensor, n_other: torch.Tensor,
                           v: Views) -> torch.Tensor:
        if self.norm == "bn":
            gf = self._unified_grad(f.detach(), t.detach(), n_own, n_other, v, self.lam, "bn")[0]
            return surrogate(gf, f)
        g = barlow_twins_unified(normalised(t.detach(), self.norm), n_own, n_other, self.lam, v)[0]
        return surrogate(g, normalised(f, self.norm))

    @torch.no_grad()
    def measure(self, v: Views) -> dict:
        """View 1 of the detached views: ``grad_cosine``, the mean cosine between the unified gradient and row (f)'s
        exact one, both w.r.t. f1 (this objective's unified form; for the loss and gradient forms row (h), l2,
        lam 50, against row (f) with this lam); ``balance_ratio`` of that unified form (|lam C t2| / |t2|);
        ``method_F``: the symmetrised C (C + C^T) / 2 of that unified form's normalised negatives, divided by d
        under BN (BN rows have mean squared norm d). Its trace is the mean cosine of the negative pairs (n1_j, n2_j)
        under l2 (the per-feature correlation between the views under BN), 1 only when they agree. This rank's
        batch (no collective)."""
        v = _local(v)
        unified = self.form == "unified"
        lam_u, norm_u = (self.lam, self.norm) if unified else (default_lambda(self.name, "unified", "l2"), "l2")
        lam_x = default_lambda(self.name, "loss") if unified else self.lam
        with _no_autocast(v.p1):
            f1, z2 = v.p1.detach(), v.z2.detach()
            a, inv = global_standardise(f1, v)
            exact = bn_backward(barlow_twins_exact(a, global_standardise(z2, v)[0], lam_x, v)[0], a, inv, v)
            n2 = _negatives(v)[1]
            o1, n2 = ((global_standardise(x, v)[0] for x in (f1, n2)) if norm_u == "bn"
                      else (normalised(f1, norm_u), normalised(n2, norm_u)))
            simple, g, t, C = self._unified_grad(f1, z2, o1, n2, v, lam_u, norm_u)
            C_sym = 0.5 * (C + C.T) / (C.shape[0] if norm_u == "bn" else 1.0)
            return {"method_F": C_sym.float(), "balance_ratio": balance_ratio(t, lam_u * (t @ C.T)),
                    "grad_cosine": grad_cosine(simple, exact)}


class VICReg(Objective):
    """VICReg in the form ``form`` ("loss", "gradient" or "unified"), symmetric 0.5 (L(f1, z2) + L(f2, z1)).

    ``lam``: the covariance coefficient nu in the loss and gradient forms (None: 1, Bardes et al.), the balance factor
    of the unified form -t + lam F u (None: 25, row (j)); ``sim``, ``std``: the invariance and variance coefficients
    (25, 25). Each half regularises its online argument only (:func:`vicreg_loss`): under an online target the loss
    form is Bardes et al.'s loss exactly, and under a constant one (stop-gradient, momentum; the gradient form always)
    each view's gradient is half theirs with the other branch held constant, their invariance : regulariser balance.
    ``norm`` (unified form only): "l2" (row (j)) or "none", the raw outputs of the linear model (flow (U1) of
    :mod:`ssltheory.theory.unified`). No state.
    """

    name = "vicreg"

    @property
    def graph_safe(self) -> bool:  # type: ignore[override]
        """The unified form reads the negative branch besides the two views: not captured."""
        return self.form != "unified"

    def __init__(self, lam: float | None = None, form: str = "loss", *, sim: float = 25.0,
                 std: float = 25.0, norm: str | None = None) -> None:
        super().__init__()
        self.norm = (NORMS[self.name][form][0] if form in FORMS else "") if norm is None else norm
        self.lam = _check(self.name, form, self.norm, lam)
        self.form, self.sim, self.std = form, float(sim), float(std)

    def extra_repr(self) -> str:
        return f"form={self.form}, lam={self.lam:g}, sim={self.sim:g}, std={self.std:g}"

    def forward(self, v: Views) -> torch.Tensor:
        """The step's 0-d loss. ``loss``: autograd through :func:`vicreg_loss`; ``gradient``: the surrogate of row
        (i) (:func:`vicreg_exact`), valued at the loss; ``unified``: the surrogate of row (j) (its value is the
        surrogate's)."""
        with _no_autocast(v.p1):
            if self.form == "loss":
                return 0.5 * (vicreg_loss(v.p1, v.z2, self.sim, self.std, self.lam)
                              + vicreg_loss(v.p2, v.z1, self.sim, self.std, self.lam))
            if self.form == "gradient":
                surr, value = 0.0, 0.0
                for f, t in ((v.p1, v.z2), (v.p2, v.z1)):
                    g, val, _ = vicreg_exact(f.detach(), t.detach(), self.sim, self.std, self.lam, v)
                    surr = surr + 0.5 * surrogate(g, f)
                    value = value + 0.5 * val
                return surr - surr.detach() + value.detach()
            n1, n2 = (normalised(n, self.norm) for n in _negatives(v))
            surr = 0.0
            for f, t, n in ((v.p1, v.z2, n1), (v.p2, v.z1, n2)):
                u = normalised(f, self.norm)
                g = vicreg_unified(u.detach(), normalised(t.detach(), self.norm), n, self.lam, v)[0]
                surr = surr + 0.5 * surrogate(g, u)
            return surr

    @torch.no_grad()
    def measure(self, v: Views) -> dict:
        """View 1 of the detached views: ``grad_cosine``, the mean cosine between row (j)'s gradient (this lam when
        the form is unified, else 25) and row (i)'s exact one (this lam, else 1), both w.r.t. f1; ``balance_ratio``
        of row (j) (|lam F u1| / |t2|); ``method_F``: F = N^-1 sum n1 n1^T of the l2-normalised negatives (trace 1).
        This rank's batch (no collective)."""
        v = _local(v)
        unified = self.form == "unified"
        lam_u, norm_u = (self.lam, self.norm) if unified else (default_lambda(self.name, "unified"), "l2")
        lam_x = default_lambda(self.name, "loss") if unified else self.lam
        with _no_autocast(v.p1):
            f1, z2 = v.p1.detach(), v.z2.detach()
            exact = vicreg_exact(f1, z2, self.sim, self.std, lam_x, v)[0]
            u1, t2 = normalised(f1, norm_u), normalised(z2, norm_u)
            g, Fm = vicreg_unified(u1, t2, normalised(_negatives(v)[0], norm_u), lam_u, v)
            return {"method_F": Fm.float(), "balance_ratio": balance_ratio(t2, lam_u * (u1 @ Fm)),
                    "grad_cosine": grad_cosine(l2_backward(g, f1) if norm_u == "l2" else g, exact)}
