"""Finite-batch SGD on the two-layer linear network: the stochastic process that Lemma 1's ODE approximates.

Each step draws a batch x0 ~ N(0, I_n1) and two views x_{1,2} = x0 + sigma * noise, and minimises
J = 1/2 mean_b ||W_p W x1 - SG(W_a x2)||^2 (Eq. 1) with the paper's mapping of the ODE's constants to a
discrete run: learning rate alpha (= ``lr``) for W, alpha * alpha_p for W_p, weight decay alpha * eta
(alpha * eta_p on W_p, so that the large-batch limit is Eq. 2 exactly), and the EMA
W_a <- W_a + alpha beta (W - W_a), i.e. 1 - gamma_a = alpha beta.

Variants follow :mod:`ssltheory.theory.matrix`: no stop-gradient (the gradient also flows through the target
W_a = W), no predictor (W_p = I), a symmetrised W_p update, and DirectPred, which sets W_p every step from the
running correlation F̂ <- rho F̂ + (1 - rho) mean(f f^T) of both views' online outputs f = W x (the official
code's estimator; under the isotropic model it is (1 + sigma^2) W W^T, the same predictor after normalising).
"""

from __future__ import annotations

import numpy as np

from .integrate import Progress, Trajectory, record_steps
from .matrix import Shapes, directpred_matrix, pack, unpack
from .params import ModeParams

Array = np.ndarray


def sgd_step(W: Array, W_p: Array, W_a: Array, x1: Array, x2: Array, params: ModeParams,
             lr: float) -> tuple[Array, Array, Array]:
    """One SGD step on a batch of views ``x1``, ``x2`` of shape (n1, B); returns the new (W, W_p, W_a).

    ``W_p`` is used as given (the caller sets it for the identity or DirectPred predictors).
    """
    a = params
    B = x1.shape[1]
    target_w = W_a if a.ema else W
    f1 = W @ x1
    G = W_p @ f1 - target_w @ x2  # (n2, B) residual of the loss
    g_W = W_p.T @ G @ x1.T / B
    if not a.stop_grad:
        g_W = g_W - G @ x2.T / B
    W_new = W - lr * (g_W + a.eta * W)
    if a.predictor in ("linear", "symmetric"):
        g_Wp = G @ f1.T / B
        if a.predictor == "symmetric":
            g_Wp = 0.5 * (g_Wp + g_Wp.T)
        W_p = W_p - lr * (a.alpha_p * g_Wp + a.eta_pred * W_p)
    W_a_new = W_a + lr * a.beta * (W - W_a) if a.ema else W_new
    return W_new, W_p, W_a_new


def run_sgd(params: ModeParams, y0: Array, shapes: Shapes, *, lr: float, steps: int, batch: int,
            rho: float = 0.3, seed: int = 0, samples: int = 200,
            on_progress: Progress | None = None) -> Trajectory:
    """Run ``steps`` SGD steps from the packed state ``y0``; returns a :class:`Trajectory` of packed states.

    Time is t = step * lr, as for the Euler integration of the ODE, so the two can be compared sample by sample.
    """
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(params.sigma2)
    W, W_p, W_a = (m.copy() for m in unpack(np.asarray(y0, float), shapes))
    if params.predictor == "none":
        W_p = np.eye(shapes.n2)
    record = record_steps(steps, samples)
    ts = record * float(lr)
    ys = np.full((len(record), shapes.size), np.nan)
    F_hat = None
    nxt = 0
    report_every = max(1, steps // 200)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k in range(steps + 1):
            if not (np.isfinite(W).all() and np.isfinite(W_p).all() and np.isfinite(W_a).all()):
                # Diverged (the step is too large for these constants): one non-finite entry spreads to every
                # weight within a step, and DirectPred's eigendecomposition cannot take it. The samples from
                # here on stay NaN; the caller reports the run as diverged.
                if nxt < len(record) and k == record[nxt]:
                    ys[nxt] = pack(W, W_p, W_a)
                break
            x0 = rng.standard_normal((shapes.n1, batch))
            x1 = x0 + sigma * rng.standard_normal(x0.shape)
            x2 = x0 + sigma * rng.standard_normal(x0.shape)
            if params.predictor == "directpred":
                f = W @ np.concatenate([x1, x2], axis=1)
                C = f @ f.T / f.shape[1]
                F_hat = C if F_hat is None else rho * F_hat + (1.0 - rho) * C
                W_p = directpred_matrix(F_hat, params.eps)
            if k == record[nxt]:
                ys[nxt] = pack(W, W_p, W_a)
                nxt += 1
                if nxt == len(record):
                    break
            W, W_p, W_a = sgd_step(W, W_p, W_a, x1, x2, params, lr)
            if on_progress is not None and (k + 1) % report_every == 0:
                on_progress((k + 1) / steps)
    if on_progress is not None:
        on_progress(1.0)
    return Trajectory(ts, ys)
