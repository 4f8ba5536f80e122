"""The unified gradient of Tao et al. 2022 (UniGrad) in the linear model of Tian, Chen & Ganguli: derivations, the
matrix and mode flows, and their fixed points. None of this is in either paper; every step is written here.

Model and notation (as in :mod:`.matrix`): one linear layer f = W x (W: n2 x n1), two views of one input,
x1 = x̄ + e1, x2 = x̄ + e2, with E[x̄ x̄ᵀ] = X, E[e eᵀ] = sigma^2 I, e1, e2, x̄ independent and zero-mean, so
E[x1 x2ᵀ] = X and E[x1 x1ᵀ] = X' = X + sigma^2 I. The online output is u1 = W x1; the target u2 = W_a x2 comes
from a target branch: ``stop-grad`` (W_a = W, held constant in the gradient) or ``ema`` (a momentum encoder,
W_a' = beta (W - W_a), the EMA flow of the BYOL analysis). There is no predictor and no normalisation: the features
are the linear model's own (the practice objectives l2-normalise; see "Assumptions").

The unified gradient (unigrad.md A1) of each form on u1, per sample, and what it becomes for W. Every form is a
detached surrogate, so dW = -E[g x1ᵀ] - eta W (gradient flow with weight decay eta):

- ``unigrad`` (Table 2 (e)): g = -u2 + lam F u1 with F = E[u uᵀ] over the target branch's outputs of both views
  (``f_branch="momentum"``, the official code): F = W_a X' W_a^T; or over the online outputs (``f_branch="online"``,
  the README's loss): F = W X' Wᵀ. Then E[g x1ᵀ] = -W_a E[x2 x1ᵀ] + lam F W E[x1 x1ᵀ], so

      W' = W_a X - lam F W X' - eta W.                                                        (U1)

- ``vicreg`` (Table 2 (j), l2 dropped): g = -u2 + lam F1 u1, F1 = E[n1 n1ᵀ] over view 1 of the negative branch
  (the target's): F1 = W_a X' W_a^T, the same matrix as (U1)'s in expectation, so (j) has (U1)'s flow.
- ``barlowtwins`` (Table 2 (h), l2 dropped; the released code): g = -u2 + lam C u2 with C = E[u1 u2ᵀ] over the
  online view 1 and the target view 2: C = W E[x1 x2ᵀ] W_aᵀ = W X W_aᵀ. Then E[g x1ᵀ] = -W_a X + lam C W_a X:

      W' = W_a X - lam W X W_aᵀ W_a X - eta W.                                                   (U2)

- ``simclr`` (Table 2 (b)), only as an approximation: with temperature T, g = (-u2 + sum_v s_v v) / T over a bank of
  target features v, s_v = softmax_v(u1·v / T). For small similarities |u1·v| << T, s_v ~ (1 + u1·v/T - mean_v'
  u1·v'/T) / K, and for zero-mean data sum_v s_v v -> F_b u1 / T with F_b = E[v vᵀ] = W_a X' W_aᵀ. So
  g ~ (-u2 + F_b u1 / T) / T: (U1) with lam = 1/T and time running 1/T as fast. It is flagged as an approximation:
  at its own fixed point u1·v / T ~ (1 - eta)/(1 + sigma^2)^2 is not small.

- ``directpred`` (Table 2 (d)) is NOT a form here. On l2-normalised outputs its per-sample balance lambda_i is a
  ratio of random quantities, with no closed-form expectation. On the raw outputs of this model lambda_i -> 1 and
  g = -W_p u2 + M u1, W_p = U diag(sqrt(s/s_max) + eps) U^T, M = F / s_max + eps^2 I: BYOL's L2 gradient with a
  DirectPred predictor (:mod:`.modes`, predictor "directpred") except that M replaces W_p^2. Per mode (X = I,
  W_a = tau W, r_j = sqrt(s_j / s_max)): s_j' = 2 s_j [(r_j + eps) tau_j - (1 + sigma^2)(r_j^2 + eps^2) - eta], which
  depends on s only through the ratios r_j, so the scale has no fixed point (the top mode, r = 1, grows or decays
  exponentially unless tau (1 + eps) = (1 + sigma^2)(1 + eps^2) + eta). It is derived, not implemented or tested.

Isotropic data X = I, X' = (1 + sigma^2) I, and Assumption 1 (W_a = tau W, as for BYOL): with s_j the eigenvalues
of F̂ = W Wᵀ and w_j = sqrt(s_j) the singular values of W, (U1) and (U2) decouple into modes,

    s_j' = 2 s_j [tau_j - eta - lam kappa tau_j^q s_j],                                           (U3)
    tau_j' = beta (1 - tau_j) - tau_j Delta_j,  Delta_j = s_j' / (2 s_j)   (ema; tau_j = 1 under stop-grad)   (U4)

with kappa = (1 + sigma^2)^2, q = 2 for (U1) with F from the momentum branch (F = (1 + sigma^2) tau^2 W Wᵀ, applied
to W X' = (1 + sigma^2) W); kappa = (1 + sigma^2)^2, q = 0 for F from the online branch; kappa = 1, q = 2 for (U2)
(C = tau W Wᵀ applied to W_a X = tau W). (U4) is the EMA flow of Eq. 13: W_a' = beta (W - W_a) with W_a = tau W.

Fixed points of (U3)-(U4) (:func:`fixed_points`), for eta < 1:
- collapsed, s = 0, tau = tau0* = the positive root of tau^2 - (eta - beta) tau - beta = 0 (tau = 1 under
  stop-grad; :func:`collapsed_tau`): Jacobian eigenvalues 2 (tau0* - eta) and eta - beta - 2 tau0* (< 0), so it is
  a saddle (unstable under stop-grad); tau0* > eta exactly when eta < 1, for every beta;
- whitened, s = s* = (1 - eta) / (lam kappa), tau = 1: stable (eigenvalues of the 2 x 2 Jacobian below), and the
  same for every mode: all nonzero modes of W Wᵀ go to one value (F̂ proportional to the identity on W's span),
  which is the whitening the decorrelation methods aim at. lam sets its scale only.
For eta > 1 the only fixed point with s >= 0 is s = 0, stable: every form collapses beyond eta = 1, whatever lam,
sigma^2 or beta. Unlike BYOL (threshold tau^2 / (4 (1 + sigma^2)), :func:`.fixed_points.collapse_threshold`), the
threshold does not depend on the augmentation; sigma^2 shrinks s* by (1 + sigma^2)^2 for (U1), not at all for (U2).

Assumptions: no l2 normalisation (the linear model's loss is quadratic; the trainer's objectives normalise), F and
C are expectations (the practice F is a running average over batches), W_a = tau W along modes (Assumption 1),
isotropic X for the modes (the matrix flow takes any X).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .checks import check_choice
from .fixed_points import FixedPoint
from .integrate import Progress, Trajectory, record_steps
from .params import check_constant

Array = np.ndarray

FORMS = ("unigrad", "vicreg", "barlowtwins", "simclr")
"""The gradient forms this module covers (Table 2 rows (e), (j), (h), (b); (b) approximately)."""
F_BRANCHES = ("momentum", "online")


@dataclass(frozen=True)
class UnifiedParams:
    """The constants of a unified-gradient flow: ``form`` (:data:`FORMS`), ``lam`` the balance factor (for
    ``simclr``: 1 / ``temperature``), ``eta`` weight decay, ``sigma2`` augmentation variance, ``beta`` the EMA rate,
    ``ema`` (False: stop-gradient, tau = 1), ``f_branch`` where (U1)'s F comes from."""

    form: str = "unigrad"
    lam: float = 1.0
    eta: float = 0.0
    sigma2: float = 0.5
    beta: float = 0.4
    ema: bool = True
    f_branch: str = "momentum"
    temperature: float = 0.2

    def __post_init__(self) -> None:
        check_choice("--method", self.form, FORMS)
        check_choice("--f-branch", self.f_branch, F_BRANCHES)
        check_constant("--lambda", self.lam, low=0.0, low_open=True)
        check_constant("--eta", self.eta, low=0.0)
        check_constant("--sigma2", self.sigma2, low=0.0)
        check_constant("--beta", self.beta, low=0.0, low_open=self.ema)
        check_constant("--temperature", self.temperature, low=0.0, low_open=True)

    @property
    def balance(self) -> float:
        """The lam of (U3): ``lam``, or 1 / temperature for the contrastive approximation."""
        return 1.0 / self.temperature if self.form == "simclr" else self.lam

    @property
    def kappa(self) -> float:
        """(1 + sigma^2)^2 for the forms whose F is over augmented views ((U1)), 1 for Barlow Twins' C ((U2))."""
        return 1.0 if self.form == "barlowtwins" else (1.0 + self.sigma2) ** 2

    @property
    def q(self) -> int:
        """The power of tau in (U3): 2 when F (or C) is made from the target branch, 0 for F from the online one."""
        return 0 if self.form in ("unigrad", "vicreg", "simclr") and self.f_branch == "online" else 2

    @property
    def time_scale(self) -> float:
        """How fast the form's time runs against (U3)'s (1 / temperature for the contrastive approximation)."""
        return 1.0 / self.temperature if self.form == "simclr" else 1.0

    @property
    def s_star(self) -> float:
        """The whitened fixed point s* = (1 - eta) / (lam kappa) (0 when eta >= 1: collapse)."""
        return max(1.0 - self.eta, 0.0) / (self.balance * self.kappa)


def mode_rates(s: Array, tau: Array, params: UnifiedParams) -> tuple[Array, Array]:
    """(s_j', tau_j') of (U3)-(U4) for arrays s, tau of any matching shape (tau' = 0 under stop-gradient)."""
    s, tau = np.asarray(s, float), np.asarray(tau, float)
    delta = tau - params.eta - params.balance * params.kappa * tau ** params.q * s
    ds = 2.0 * s * delta * params.time_scale
    dtau = (params.beta * (1.0 - tau) - tau * delta * params.time_scale) if params.ema else np.zeros_like(tau)
    return ds, dtau


def mode_field(params: UnifiedParams):
    """The field of (U3)-(U4) on states (..., 2) = (s_j, tau_j), for :func:`.integrate.ode`."""
    def field(t: float, y: Array) -> Array:
        ds, dtau = mode_rates(y[..., 0], y[..., 1], params)
        return np.stack([ds, dtau], axis=-1)
    return field


def collapsed_tau(params: UnifiedParams) -> float:
    """tau at the collapsed fixed point: the positive root of c tau^2 - (c eta - beta) tau - beta = 0 under EMA
    (tau' = 0 with Delta = c (tau - eta), c the form's time scale, 1 but for the contrastive approximation), 1 under
    stop-gradient. It exceeds eta exactly when eta < 1."""
    if not params.ema:
        return 1.0
    c = params.time_scale
    b = c * params.eta - params.beta
    return (b + math.sqrt(b * b + 4.0 * c * params.beta)) / (2.0 * c)


def jacobian(s: float, tau: float, params: UnifiedParams) -> Array:
    """The Jacobian of (U3)-(U4) at (s, tau), 2 x 2 (under stop-gradient the tau row and column are dropped: 1 x 1)."""
    lk, q, ts = params.balance * params.kappa, params.q, params.time_scale
    delta = tau - params.eta - lk * tau ** q * s
    d_delta_ds, d_delta_dtau = -lk * tau ** q, 1.0 - q * lk * tau ** max(q - 1, 0) * s
    dss = 2.0 * ts * (delta + s * d_delta_ds)
    if not params.ema:
        return np.array([[dss]])
    dst = 2.0 * ts * s * d_delta_dtau
    dts = -tau * ts * d_delta_ds
    dtt = -params.beta - ts * (delta + tau * d_delta_dtau)
    return np.array([[dss, dst], [dts, dtt]])


def _kind(eigs: Array) -> str:
    re = np.real(eigs)
    if np.all(re < 0):
        return "stable"
    if np.all(re > 0):
        return "unstable"
    return "saddle" if np.any(re < 0) and np.any(re > 0) else "degenerate"


def fixed_points(params: UnifiedParams) -> list[FixedPoint]:
    """The fixed points of (U3)-(U4) with s >= 0, labelled by the Jacobian's eigenvalues (p = 1: no predictor)."""
    out = []
    tau0 = collapsed_tau(params)
    eigs = np.linalg.eigvals(jacobian(0.0, tau0, params))
    out.append(FixedPoint(1.0, 0.0, tau0, _kind(eigs), list(eigs)))
    if params.eta < 1.0:
        s_star = params.s_star
        eigs = np.linalg.eigvals(jacobian(s_star, 1.0, params))
        out.append(FixedPoint(1.0, s_star, 1.0, _kind(eigs), list(eigs)))
    return out


def matrix_rates(W: Array, W_a: Array, params: UnifiedParams, X: Array,
                 sigma2: float | None = None) -> tuple[Array, Array]:
    """(W', W_a') of (U1) / (U2) for any input correlation X (n1 x n1); W, W_a: (n2, n1). Under stop-gradient pass
    W_a = W (W_a' is then 0)."""
    sigma2 = params.sigma2 if sigma2 is None else sigma2
    Xp = X + sigma2 * np.eye(X.shape[0])
    lam = params.balance
    if params.form == "barlowtwins":
        dW = W_a @ X - lam * W @ X @ W_a.T @ W_a @ X - params.eta * W
    else:
        B = W_a if params.f_branch == "momentum" else W
        F = B @ Xp @ B.T
        dW = W_a @ X - lam * F @ W @ Xp - params.eta * W
    dW = dW * params.time_scale
    dWa = params.beta * (W - W_a) if params.ema else np.zeros_like(W_a)
    return dW, dWa


def sample_gradient(W: Array, W_a: Array, x1: Array, x2: Array, params: UnifiedParams,
                    F: Array | None = None) -> Array:
    """The form's per-sample gradient on W averaged over a batch, mean_i g_i x1_iᵀ (the SGD estimate of
    -(W' + eta W) / time_scale), with g_i the unified gradient of each sample on u1 = W x1_i; x1, x2: (N, n1).

    F (or Barlow Twins' C) is the batch's own estimate unless given: over both views' target (or online, for
    ``f_branch="online"``) outputs for (U1), over online view 1 x target view 2 for (U2)."""
    u1, u2 = x1 @ W.T, x2 @ W_a.T
    n = x1.shape[0]
    lam = params.balance
    if params.form == "barlowtwins":
        C = (u1.T @ u2) / n if F is None else F
        g = -u2 + lam * u2 @ C.T
    else:
        if F is None:
            B = W_a if params.f_branch == "momentum" else W
            v = np.concatenate([x1 @ B.T, x2 @ B.T])
            F = (v.T @ v) / v.shape[0]
        g = -u2 + lam * u1 @ F.T
    return (g.T @ x1) / n


def run_sgd(params: UnifiedParams, W0: Array, Wa0: Array, *, lr: float, steps: int, batch: int, seed: int = 0,
            samples: int = 200, on_progress: Progress | None = None) -> Trajectory:
    """Finite-batch SGD on the linear network with the form's per-sample gradient (:func:`sample_gradient`, F or C
    each batch's own): x0 ~ N(0, I_n1), views x0 + sigma * noise, W <- W - lr c (g + eta W) with c the form's time
    scale, W_a <- W_a + lr beta (W - W_a) under EMA (W_a = W under stop-gradient). Time is t = step * lr, as for the
    Euler integration of (U1)/(U2); states (2, n2, n1) = (W, W_a), NaN from a divergence on."""
    rng = np.random.default_rng((seed, 1))  # not W(0)'s stream (the callers draw it from default_rng(seed))
    sigma = math.sqrt(params.sigma2)
    W, W_a = np.array(W0, float), np.array(Wa0 if params.ema else W0, float)
    record = record_steps(steps, samples)
    ys = np.full((len(record), 2, *W.shape), np.nan)
    nxt, every = 0, max(1, steps // 200)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps + 1):
            if k == record[nxt]:
                ys[nxt] = (W, W_a)
                nxt += 1
                if nxt == len(record):
                    break
            if not (np.isfinite(W).all() and np.isfinite(W_a).all()):
                break
            x0 = rng.standard_normal((batch, W.shape[1]))
            x1, x2 = x0 + sigma * rng.standard_normal(x0.shape), x0 + sigma * rng.standard_normal(x0.shape)
            g = sample_gradient(W, W_a, x1, x2, params)
            W_new = W - lr * params.time_scale * (g + params.eta * W)
            W_a = W_a + lr * params.beta * (W - W_a) if params.ema else W_new
            W = W_new
            if on_progress is not None and (k + 1) % every == 0:
                on_progress((k + 1) / steps)
    if on_progress is not None:
        on_progress(1.0)
    return Trajectory(record * float(lr), ys)
