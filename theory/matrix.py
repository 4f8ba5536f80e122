"""Full-matrix dynamics of the two-layer linear BYOL/SimSiam model (Lemma 1, Eqs. 2-4) and its variants.

State: online W (n2 x n1), predictor W_p (n2 x n2), target W_a (n2 x n1). Data statistics: X = E[x̄ x̄^T]
(n1 x n1) and the augmentation covariance X' (n1 x n1); the isotropic model is X = I, X' = sigma^2 I.

    W_p' = alpha_p (-W_p W (X + X') + W_a X) W^T - eta_p W_p      (Eq. 2)
    W'   = W_p^T (-W_p W (X + X') + W_a X) - eta W                 (Eq. 3)
    W_a' = beta (W - W_a)                                           (Eq. 4, BYOL; SimSiam has W_a = W)

Variants, chosen by :class:`~ssltheory.theory.params.ModeParams`:
- ``stop_grad=False`` (W_a = W): the Theorem 2 flow
  W' = -(W_p^T W_p + I) W X' - (W_p - I)^T (W_p - I) W X - eta W.
- ``predictor="none"``: W_p = I (held fixed).
- ``predictor="symmetric"``: the W_p flow is symmetrised, (W_p' + W_p'^T) / 2 (Eq. 7 when W_p(0) is symmetric).
- ``predictor="directpred"``: W_p = U diag(p) U^T from the eigendecomposition F = W X W^T = U diag(s) U^T with
  DirectPred's p_j (:func:`~ssltheory.theory.modes.directpred_p`); W_p has no flow of its own.

The three matrices travel as one flat vector (:func:`pack` / :func:`unpack`) so that the generic integrators
in :mod:`ssltheory.theory.integrate` apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .modes import directpred_eigenvalues
from .params import ModeParams

Array = np.ndarray


@dataclass(frozen=True)
class Shapes:
    """Layer widths: input n1, output n2."""

    n1: int
    n2: int

    @property
    def size(self) -> int:
        """Length of the packed state vector."""
        return 2 * self.n2 * self.n1 + self.n2 * self.n2


def pack(W: Array, W_p: Array, W_a: Array) -> Array:
    """Flatten (W, W_p, W_a) into one vector of length 2 n2 n1 + n2^2 (last axes are the matrices)."""
    lead = W.shape[:-2]
    return np.concatenate([W.reshape(*lead, -1), W_p.reshape(*lead, -1), W_a.reshape(*lead, -1)], axis=-1)


def unpack(y: Array, shapes: Shapes) -> tuple[Array, Array, Array]:
    """Inverse of :func:`pack`; works on a leading batch (e.g. time) axis too."""
    n1, n2 = shapes.n1, shapes.n2
    lead = y.shape[:-1]
    a, b = n2 * n1, n2 * n1 + n2 * n2
    return (y[..., :a].reshape(*lead, n2, n1), y[..., a:b].reshape(*lead, n2, n2),
            y[..., b:].reshape(*lead, n2, n1))


def isotropic_data(n1: int, sigma2: float) -> tuple[Array, Array]:
    """X = I and X' = sigma^2 I of the isotropic model (Assumption 2), each (n1, n1)."""
    eye = np.eye(n1)
    return eye, sigma2 * eye


def directpred_matrix(F: Array, eps: float = 0.0) -> Array:
    """DirectPred's predictor U diag(p) U^T for a correlation F (n2 x n2), p from :func:`directpred_eigenvalues`.

    A non-finite F (a diverged run) gives a NaN predictor instead of an eigensolver error.
    """
    if not np.all(np.isfinite(F)):
        return np.full_like(F, np.nan, dtype=float)
    s, U = np.linalg.eigh(0.5 * (F + F.T))
    p = directpred_eigenvalues(s, eps)
    return (U * p) @ U.T


def effective_predictor(W: Array, W_p: Array, params: ModeParams, X: Array) -> Array:
    """The W_p that enters the flow: the state's, I for no predictor, or DirectPred's from F = W X W^T."""
    if params.predictor == "none":
        return np.eye(W.shape[0])
    if params.predictor == "directpred":
        return directpred_matrix(W @ X @ W.T, params.eps)
    return W_p


def matrix_rates(W: Array, W_p: Array, W_a: Array, params: ModeParams, X: Array,
                 Xp: Array) -> tuple[Array, Array, Array]:
    """Time derivatives (W', W_p', W_a') of Lemma 1 and its variants; shapes as the inputs.

    Without EMA (SimSiam) the target is the online network: W_a is ignored and W_a' = W' so that a state
    started with W_a = W keeps it.
    """
    a = params
    n2 = W.shape[0]
    Wp = effective_predictor(W, W_p, a, X)
    target = W_a if a.ema else W
    if a.stop_grad:
        R = -Wp @ W @ (X + Xp) + target @ X
        dW = Wp.T @ R - a.eta * W
    else:
        R = -Wp @ W @ (X + Xp) + W @ X
        Wt = Wp - np.eye(n2)
        dW = -(Wp.T @ Wp + np.eye(n2)) @ W @ Xp - Wt.T @ Wt @ W @ X - a.eta * W
    if a.predictor in ("none", "directpred"):
        dWp = np.zeros_like(W_p)
    else:
        dWp = a.alpha_p * R @ W.T - a.eta_pred * W_p
        if a.predictor == "symmetric":
            dWp = 0.5 * (dWp + dWp.T)
    dWa = a.beta * (W - W_a) if a.ema else dW
    return dW, dWp, dWa


def matrix_field(params: ModeParams, shapes: Shapes, X: Array, Xp: Array):
    """The vector field on packed states, for :mod:`ssltheory.theory.integrate`."""

    def field(t: float, y: Array) -> Array:
        W, W_p, W_a = unpack(y, shapes)
        return pack(*matrix_rates(W, W_p, W_a, params, X, Xp))

    return field


def random_init(shapes: Shapes, params: ModeParams, *, scale: float = 0.3, seed: int = 0) -> Array:
    """A packed random start: W and W_p Gaussian with entries of std ``scale / sqrt(width)``.

    W_p is symmetric for the symmetric predictor (Assumption 3) and the identity without a predictor.
    The target starts at W_a = 0 with EMA (as in the paper's Fig. 7) and at W_a = W without.
    """
    rng = np.random.default_rng(seed)
    n1, n2 = shapes.n1, shapes.n2
    W = rng.standard_normal((n2, n1)) * scale / np.sqrt(n1)
    W_p = rng.standard_normal((n2, n2)) * scale / np.sqrt(n2)
    if params.predictor == "symmetric":
        W_p = 0.5 * (W_p + W_p.T)
    elif params.predictor == "none":
        W_p = np.eye(n2)
    elif params.predictor == "directpred":
        W_p = directpred_matrix(W @ W.T, params.eps)
    W_a = np.zeros_like(W) if params.ema else W.copy()
    return pack(W, W_p, W_a)
