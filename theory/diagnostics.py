"""Quantities the paper tracks along full-matrix trajectories.

All functions are pure: matrices in, arrays out. For a trajectory of T samples, :func:`trajectory_diagnostics`
returns a dict of arrays with a leading time axis.

- spectra: eigenvalues s_j of F = W X W^T and of sym(W_p), in descending order;
- alignment cos(u_j, W_p u_j) = <u_j, W_p u_j> / ||W_p u_j|| for the eigenvectors u_j of F (Theorem 3);
- ||[F, W_p]||_F, the asymmetry ||W_p - W_p^T||_F / ||W_p||_F, lambda_min of K (Eq. 9);
- the Theorem 1 residual ||W W^T - W_p^T W_p / alpha_p - e^{-2 eta t} C||_F relative to the scale of the terms;
- the normalised correlation <W_a, W>_F / (||W_a|| ||W||) and the proportional-EMA ratio tau = <W_a, W> / ||W||^2.
"""

from __future__ import annotations

import numpy as np

from .fixed_points import parabola_offset_decay
from .matrix import Shapes, effective_predictor, unpack
from .params import ModeParams

Array = np.ndarray


def sym(A: Array) -> Array:
    """Symmetric part (A + A^T) / 2 over the last two axes."""
    return 0.5 * (A + np.swapaxes(A, -1, -2))


def eig_desc(S: Array) -> tuple[Array, Array]:
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix."""
    s, U = np.linalg.eigh(sym(S))
    return s[..., ::-1], U[..., ::-1]


def alignment(F: Array, W_p: Array) -> Array:
    """cos(u_j, W_p u_j) for the eigenvectors u_j of F, ordered by descending eigenvalue; shape (n2,).

    1 means u_j is an eigenvector of W_p with a positive eigenvalue, -1 with a negative one.
    """
    _, U = eig_desc(F)
    V = W_p @ U
    num = np.einsum("ij,ij->j", U, V)
    den = np.linalg.norm(V, axis=0)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def rayleigh_p(F: Array, W_p: Array) -> Array:
    """p_j := u_j^T W_p u_j along the eigenvectors of F (descending s_j): the W_p eigenvalue of mode j once aligned."""
    _, U = eig_desc(F)
    return np.einsum("ij,ij->j", U, W_p @ U)


def commutator_norm(F: Array, W_p: Array) -> float:
    """||F W_p - W_p F||_F."""
    return float(np.linalg.norm(F @ W_p - W_p @ F))


def asymmetry(W_p: Array) -> float:
    """||W_p - W_p^T||_F / ||W_p||_F (0 for a symmetric predictor)."""
    n = np.linalg.norm(W_p)
    return float(np.linalg.norm(W_p - W_p.T) / n) if n > 0 else 0.0


def k_matrix(F: Array, W_p: Array, tau: float, params: ModeParams) -> Array:
    """K of Eq. 9: (1 + sigma^2) [alpha_p F / 2 + W_p^2 - tau W_p / (1 + sigma^2)] + 3 eta I / 2, for sym(W_p)."""
    k = 1.0 + params.sigma2
    Ws = sym(W_p)
    return k * (0.5 * params.alpha_p * F + Ws @ Ws) - tau * Ws + 1.5 * params.eta * np.eye(F.shape[0])


def target_ratio(W: Array, W_a: Array) -> float:
    """Least-squares tau with W_a ≈ tau W (Assumption 1)."""
    n = float(np.sum(W * W))
    return float(np.sum(W_a * W) / n) if n > 0 else 1.0


def normalized_correlation(W: Array, W_a: Array) -> float:
    """<W_a, W>_F / (||W_a||_F ||W||_F): how well W_a = tau W holds (the paper's Fig. 7)."""
    n = float(np.linalg.norm(W) * np.linalg.norm(W_a))
    return float(np.sum(W * W_a) / n) if n > 0 else 1.0


def theorem1_residual(W: Array, W_p: Array, t: float, C: Array, params: ModeParams) -> float:
    """||W W^T - W_p^T W_p / alpha_p - e^{-2 eta t} C||_F divided by ||W W^T||_F + ||W_p^T W_p||_F / alpha_p."""
    A = W @ W.T
    B = W_p.T @ W_p / params.alpha_p
    scale = np.linalg.norm(A) + np.linalg.norm(B)
    r = np.linalg.norm(A - B - parabola_offset_decay(C, params.eta, t))
    return float(r / scale) if scale > 0 else float(r)


def theorem1_constant(W0: Array, W_p0: Array, alpha_p: float) -> Array:
    """C = W(0) W(0)^T - W_p(0)^T W_p(0) / alpha_p of Theorem 1."""
    return W0 @ W0.T - W_p0.T @ W_p0 / alpha_p


def trajectory_diagnostics(t: Array, y: Array, shapes: Shapes, params: ModeParams, X: Array) -> dict[str, Array]:
    """Every diagnostic at every sample of a packed full-matrix trajectory.

    ``t``: (T,), ``y``: (T, state). Returns arrays with leading axis T: ``s`` and ``p_sym`` (T, n2) descending,
    ``p_rayleigh`` and ``alignment`` (T, n2) per eigenvector of F, and scalars per time ``commutator``,
    ``asymmetry``, ``lambda_min_K``, ``theorem1``, ``corr_Wa_W``, ``tau``, ``norm_W``.
    """
    W_all, Wp_all, Wa_all = unpack(y, shapes)
    Wp_all = np.stack([effective_predictor(W, Wp, params, X) for W, Wp in zip(W_all, Wp_all, strict=True)])
    C = theorem1_constant(W_all[0], Wp_all[0], params.alpha_p) if params.alpha_p > 0 else None
    out: dict[str, list] = {k: [] for k in ("s", "p_sym", "p_rayleigh", "alignment", "commutator", "asymmetry",
                                             "lambda_min_K", "theorem1", "corr_Wa_W", "tau", "norm_W")}
    for ti, W, W_p, W_a in zip(t, W_all, Wp_all, Wa_all, strict=True):
        F = W @ X @ W.T
        tau = target_ratio(W, W_a) if params.ema else 1.0
        out["s"].append(eig_desc(F)[0])
        out["p_sym"].append(eig_desc(W_p)[0])
        out["p_rayleigh"].append(rayleigh_p(F, W_p))
        out["alignment"].append(alignment(F, W_p))
        out["commutator"].append(commutator_norm(F, W_p))
        out["asymmetry"].append(asymmetry(W_p))
        out["lambda_min_K"].append(float(np.linalg.eigvalsh(k_matrix(F, W_p, tau, params))[0]))
        out["theorem1"].append(theorem1_residual(W, W_p, ti, C, params) if C is not None else np.nan)
        out["corr_Wa_W"].append(normalized_correlation(W, W_a))
        out["tau"].append(tau)
        out["norm_W"].append(float(np.linalg.norm(W)))
    return {k: np.asarray(v) for k, v in out.items()}
