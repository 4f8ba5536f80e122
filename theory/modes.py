"""Decoupled eigen-mode dynamics (Eqs. 11-13), vectorized over modes and initial conditions.

Once W_p and F = W W^T share eigenvectors (Theorem 3), each eigen-mode j evolves on its own:

    p_j' = alpha_p s_j [tau_j - (1 + sigma^2) p_j] - eta_p p_j          (Eq. 11)
    s_j' = 2 p_j s_j [tau_j - (1 + sigma^2) p_j] - 2 eta s_j             (Eq. 12)
    tau_j' = beta (1 - tau_j) - tau_j Delta_j,  Delta_j = s_j' / (2 s_j)  (Eq. 13, division-free form)

p_j is an eigenvalue of W_p, s_j one of F, and tau_j the per-mode ratio W_a = tau_j W of Assumption 1.
Every function takes arrays of any (matching or broadcastable) shape and returns arrays of that shape, so a
whole grid of initial conditions is one call.

Variants (``ModeParams``):
- ``ema=False`` (SimSiam) or ``tau_fixed``: tau is a constant (1 for SimSiam); tau' = 0.
- ``predictor="none"``: W_p = I, so p_j = 1 is held and only s_j moves.
- ``predictor="directpred"``: p_j from s_j / max_k s_k by :func:`directpred_p` (across the last axis,
  the modes of one network), as the official code does; p_j has no flow of its own.
- ``stop_grad=False`` (needs W_a = W): the Theorem 2 flow
  s_j' = -2 s_j [(p_j^2 + 1) sigma^2 + (p_j - 1)^2 + eta], which collapses every mode.
- ``predictor="symmetric"`` equals ``"linear"`` here: the decoupled modes already assume a symmetric W_p.
"""

from __future__ import annotations

import numpy as np

from .params import ModeParams

Array = np.ndarray


P_FLOOR = 1e-4
"""DirectPred's floor on p_j (the official code's ``min_eig``)."""


def directpred_p(ratio, eps: float = 0.0, inside: bool = False, floor: float = P_FLOOR):
    """DirectPred's rule for the predictor eigenvalues, the one home of p_j for the theory and the trainer.

    ``ratio``: s_j / max_k s_k in [0, 1], a numpy array or a torch tensor of any shape (returned alike).
    p_j = max(sqrt(ratio_j) + eps, floor) (the official code's ``boost_scale``, not Eq. 18 as printed; see
    directpred.md §3), or with ``inside`` p_j = sqrt(max(ratio_j + eps, floor)) (its ``dyn_eps_inside``, Table 7:
    eps = -c_j gives sqrt(max(s_j - c_j, 0))).
    """
    def sqrt(x):
        return x.sqrt() if hasattr(x, "sqrt") else np.sqrt(x)

    if inside:
        return sqrt((ratio + eps).clip(min=floor))
    return (sqrt(ratio) + eps).clip(min=floor)


def directpred_eigenvalues(s: Array, eps: float = 0.0, floor: float = P_FLOOR, inside: bool = False) -> Array:
    """DirectPred's predictor eigenvalues (:func:`directpred_p`) from the eigenvalues ``s`` (..., d) of F.

    The max is over the last axis; returns an array of the same shape. A network whose F is exactly zero gets
    p_j = eps (or the floor): there is nothing to normalise by.
    """
    s_pos = np.clip(s, 0.0, None)
    smax = np.max(s_pos, axis=-1, keepdims=True)
    ratio = np.divide(s_pos, smax, out=np.zeros_like(s_pos), where=smax > 0)
    return directpred_p(ratio, eps, inside, floor)


def mode_rates(p: Array, s: Array, tau: Array, params: ModeParams) -> tuple[Array, Array, Array]:
    """Time derivatives (p', s', tau') of the decoupled modes.

    Shapes: ``p``, ``s``, ``tau`` broadcast together; the outputs have the broadcast shape. With
    ``predictor="directpred"`` the given ``p`` is ignored and recomputed from ``s`` (modes on the last axis),
    and p' is 0. Units: per unit of continuous time t = step * lr.
    """
    a = params
    p, s, tau = np.broadcast_arrays(np.asarray(p, float), np.asarray(s, float), np.asarray(tau, float))
    k = 1.0 + a.sigma2
    if a.predictor == "none":
        p = np.ones_like(p)
    elif a.predictor == "directpred":
        p = directpred_eigenvalues(s, a.eps)
    if not a.stop_grad:
        # Theorem 2 flow with W_a = W (tau = 1): W' = -(W_p^T W_p + I) W X' - (W_p - I)^T (W_p - I) W X - eta W.
        delta = -((p * p + 1.0) * a.sigma2 + (p - 1.0) ** 2 + a.eta)
        dp_grad = a.alpha_p * s * (1.0 - k * p)
    else:
        g = tau - k * p
        delta = p * g - a.eta
        dp_grad = a.alpha_p * s * g
    if a.predictor in ("none", "directpred"):
        dp = np.zeros_like(p)
    else:
        dp = dp_grad - a.eta_pred * p
    ds = 2.0 * s * delta
    if a.tau_dynamic:
        dtau = a.beta * (1.0 - tau) - tau * delta
    else:
        dtau = np.zeros_like(tau)
    return dp, ds, dtau


def initial_tau(params: ModeParams, tau0: float, shape: tuple[int, ...]) -> Array:
    """tau at t = 0: ``tau0`` when it follows Eq. 13, else the fixed value (1 for SimSiam)."""
    if params.tau_dynamic:
        value = tau0
    elif params.tau_fixed is not None:
        value = params.tau_fixed
    else:
        value = 1.0
    return np.full(shape, float(value))


def pack(p: Array, s: Array, tau: Array) -> Array:
    """Stack the mode states into one array of shape (3, ...) for the integrators."""
    return np.stack(np.broadcast_arrays(np.asarray(p, float), np.asarray(s, float), np.asarray(tau, float)))


def mode_field(params: ModeParams):
    """The vector field y -> y' on packed states of shape (3, ...), for :mod:`ssltheory.theory.integrate`."""

    def field(t: float, y: Array) -> Array:
        return np.stack(mode_rates(y[0], y[1], y[2], params))

    return field


def effective_p(p: Array, s: Array, params: ModeParams) -> Array:
    """The predictor eigenvalue the dynamics actually use (1 for no predictor, DirectPred's from s)."""
    if params.predictor == "none":
        return np.ones_like(np.asarray(p, float))
    if params.predictor == "directpred":
        return directpred_eigenvalues(np.asarray(s, float), params.eps)
    return np.asarray(p, float)


def parabola_offset(p: Array, s: Array, alpha_p: float) -> Array:
    """c_j(t) e^{-2 eta t} = s_j - p_j^2 / alpha_p: distance above the invariant parabola (Eq. 14)."""
    return np.asarray(s) - np.asarray(p) ** 2 / alpha_p


def k_eigenvalue(p: Array, s: Array, tau: Array, params: ModeParams) -> Array:
    """Mode-j eigenvalue of K (Eq. 9) for aligned modes: alpha_p (1+sigma^2) s / 2 - Delta_j + eta / 2.

    Theorem 3 keeps the eigenspaces aligned while this is positive for every mode (Eq. 17).
    """
    p = effective_p(p, s, params)
    k = 1.0 + params.sigma2
    return k * (0.5 * params.alpha_p * s + p * p - tau / k * p) + 1.5 * params.eta
