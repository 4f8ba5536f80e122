"""The reduced (W_p, F) dynamics at fixed tau under Assumptions 1-2 (X = I, X' = sigma^2 I), App. B of the paper.

- Unsymmetrised flow (Eq. 62), ``predictor="linear"``:
  W_p' = -alpha_p (1 + sigma^2) W_p F + alpha_p tau F - eta_p W_p,
  F'   = -(1 + sigma^2) (W_p^T W_p F + F W_p^T W_p) + tau (W_p^T F + F W_p) - 2 eta F.
- Symmetrised flow (Eq. 7 = Eq. 67), ``predictor="symmetric"``, with {A, B} = AB + BA:
  W_p' = -(alpha_p / 2)(1 + sigma^2) {W_p, F} + alpha_p tau F - eta_p W_p,
  F'   = -(1 + sigma^2) {W_p^2, F} + tau {W_p, F} - 2 eta F.

Fig. 8 integrates Eq. 62 from F = W_p^T W_p (Theorem 1 with C = 0) and tracks ||A||_F, ||B||_F of the symmetric and
antisymmetric parts of W_p; Fig. 9 tracks ||[F, W_p]||_F under Eq. 67. State: packed (2, n, n) = (W_p, F).
"""

from __future__ import annotations

import numpy as np

from .diagnostics import alignment, commutator_norm, eig_desc, sym
from .params import ModeParams

Array = np.ndarray


def reduced_rates(W_p: Array, F: Array, tau: float, params: ModeParams) -> tuple[Array, Array]:
    """(W_p', F') of Eq. 62 (linear predictor) or Eq. 67 (symmetric); all (n, n)."""
    a, k = params, 1.0 + params.sigma2
    if a.predictor == "symmetric":
        dWp = -0.5 * a.alpha_p * k * (W_p @ F + F @ W_p) + a.alpha_p * tau * F - a.eta_pred * W_p
        W2 = W_p @ W_p
        dF = -k * (W2 @ F + F @ W2) + tau * (W_p @ F + F @ W_p) - 2.0 * a.eta * F
    else:
        dWp = -a.alpha_p * k * W_p @ F + a.alpha_p * tau * F - a.eta_pred * W_p
        M = W_p.T @ W_p
        dF = -k * (M @ F + F @ M) + tau * (W_p.T @ F + F @ W_p) - 2.0 * a.eta * F
    return dWp, dF


def reduced_field(params: ModeParams, tau: float):
    """Vector field on packed states (2, n, n) for :mod:`ssltheory.theory.integrate`."""

    def field(t: float, y: Array) -> Array:
        return np.stack(reduced_rates(y[0], y[1], tau, params))

    return field


def reduced_init(n: int, params: ModeParams, *, scale: float = 0.3, seed: int = 0) -> Array:
    """Random start: W_p Gaussian (symmetrised for Eq. 67); F = W_p^T W_p for Eq. 62 (Fig. 8), else W W^T with an
    independent W, so that [F, W_p] starts away from 0 (Fig. 9)."""
    rng = np.random.default_rng(seed)
    W_p = scale * rng.standard_normal((n, n))
    if params.predictor == "symmetric":
        W_p = sym(W_p)
        W = scale * rng.standard_normal((n, n))
        F = W @ W.T
    else:
        F = W_p.T @ W_p
    return np.stack([W_p, F])


def reduced_diagnostics(y: Array) -> dict[str, Array]:
    """Per time sample: ||A||_F, ||B||_F (sym / antisym parts of W_p), ||[F, W_p]||_F, spectra and alignment."""
    out: dict[str, list] = {k: [] for k in ("norm_A", "norm_B", "commutator", "s", "p_sym", "alignment")}
    for W_p, F in y:
        A = sym(W_p)
        out["norm_A"].append(float(np.linalg.norm(A)))
        out["norm_B"].append(float(np.linalg.norm(W_p - A)))
        out["commutator"].append(commutator_norm(F, W_p))
        out["s"].append(eig_desc(sym(F))[0])
        out["p_sym"].append(eig_desc(A)[0])
        out["alignment"].append(alignment(sym(F), W_p))
    return {k: np.asarray(v) for k, v in out.items()}
