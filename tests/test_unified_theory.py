"""The unified gradient in the linear model (theory/unified.py): the flows are the expectations of the per-sample
gradients, the closed-form fixed points are where trajectories go, and SGD approaches the flow as the batch grows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ssltheory.theory import integrate
from ssltheory.theory.checks import ConfigError
from ssltheory.theory.unified import FORMS, UnifiedParams, fixed_points, matrix_rates, mode_field, sample_gradient

N1, N2 = 3, 2


def _setup(seed: int = 0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(N1, N1))
    X = A @ A.T / N1 + 0.3 * np.eye(N1)
    return rng, X, rng.normal(size=(N2, N1)), rng.normal(size=(N2, N1))


def _support(X: np.ndarray, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """Every (x̄, e1, e2) of a finite distribution with E[x̄ x̄ᵀ] = X, E[e eᵀ] = sigma2 I, zero means: x̄ in
    {±sqrt(n) L e_k} (X = L Lᵀ), e in {±sqrt(n sigma2) e_k}; returns the views (x1, x2), (2n)^3 rows each."""
    L = np.linalg.cholesky(X)
    xs = [s * np.sqrt(N1) * L[:, k] for k in range(N1) for s in (1, -1)]
    es = [s * np.sqrt(N1 * sigma2) * np.eye(N1)[k] for k in range(N1) for s in (1, -1)]
    rows = list(itertools.product(xs, es, es))
    return np.array([x + e1 for x, e1, _ in rows]), np.array([x + e2 for x, _, e2 in rows])


CASES = [dict(form=f, f_branch=b, ema=e) for f in FORMS for b in ("momentum", "online") for e in (True, False)
         if not (f == "barlowtwins" and b == "online")]


@pytest.mark.parametrize("case", CASES)
def test_the_matrix_flow_is_the_exact_expectation_of_the_per_sample_gradient(case):
    """Over a finite distribution with the model's moments, mean_i g_i x1_iᵀ (F or C the exact average over it)
    equals -(W' + eta W) of (U1) / (U2) to 1e-10."""
    _, X, W, W_a = _setup()
    params = UnifiedParams(lam=1.7, eta=0.05, sigma2=0.4, **case)
    W_a = W_a if params.ema else W
    x1, x2 = _support(X, params.sigma2)
    grad = sample_gradient(W, W_a, x1, x2, params)
    dW, _ = matrix_rates(W, W_a, params, X)
    np.testing.assert_allclose(grad, -(dW / params.time_scale + params.eta * W), rtol=0, atol=1e-10)


@pytest.mark.parametrize("form", ["unigrad", "barlowtwins"])
def test_a_large_gaussian_batch_estimates_the_flow_within_its_standard_error(form):
    rng, X, W, W_a = _setup(1)
    params = UnifiedParams(form=form, lam=1.3, eta=0.0, sigma2=0.5)
    n = 100_000
    L = np.linalg.cholesky(X)
    xb = rng.normal(size=(n, N1)) @ L.T
    x1 = xb + np.sqrt(params.sigma2) * rng.normal(size=(n, N1))
    x2 = xb + np.sqrt(params.sigma2) * rng.normal(size=(n, N1))
    Xp = X + params.sigma2 * np.eye(N1)
    F = W_a @ Xp @ W_a.T if form == "unigrad" else W @ X @ W_a.T  # the exact F / C: the estimate's own noise only
    u1, u2 = x1 @ W.T, x2 @ W_a.T
    g = -u2 + params.lam * (u1 @ F.T if form == "unigrad" else u2 @ F.T)
    per = g[:, :, None] * x1[:, None, :]  # (n, n2, n1)
    mean, se = per.mean(0), per.std(0) / np.sqrt(n)
    exact = -matrix_rates(W, W_a, params, X)[0]
    assert np.all(np.abs(mean - exact) < 4.5 * se), (np.abs(mean - exact) / se).max()
    assert np.allclose(sample_gradient(W, W_a, x1, x2, params, F), mean)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("ema", [True, False])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.4])
def test_closed_form_fixed_points_are_the_limits_and_their_labels_hold(form, ema, eta):
    """From a grid of starts every mode goes to the one stable fixed point: s* = (1 - eta) / (lam kappa) for eta < 1,
    whatever its start (whitening), and s = 0 beyond eta = 1; a start next to the collapsed point leaves it when it
    is a saddle / unstable, and a start next to s* returns."""
    params = UnifiedParams(form=form, lam=2.0, eta=eta, sigma2=0.5, beta=0.4, ema=ema)
    fps = {fp.kind: fp for fp in fixed_points(params)}
    stable = fps["stable"]
    s0 = np.array([0.02, 0.3, 1.0, 3.0])
    tau0 = np.array([0.3, 1.0]) if ema else np.array([1.0])
    S, T = np.meshgrid(s0, tau0)
    near = [(stable.s * 1.05 + 1e-3, stable.tau)]
    if eta < 1:
        collapsed = next(fp for fp in fixed_points(params) if fp.s == 0.0)
        assert collapsed.kind == ("saddle" if ema else "unstable")
        near.append((1e-4, collapsed.tau))
    y0 = np.stack([np.concatenate([S.ravel(), [a for a, _ in near]]),
                   np.concatenate([T.ravel(), [b for _, b in near]])], axis=-1)
    end = integrate.ode(mode_field(params), y0, 400.0, method="LSODA", rtol=1e-10, atol=1e-13).final
    np.testing.assert_allclose(end[:, 0], stable.s, atol=1e-6)
    np.testing.assert_allclose(end[:, 1], stable.tau, atol=1e-6)
    if eta >= 1:
        assert stable.s == 0.0 and len(fixed_points(params)) == 1  # collapse, whatever lam, sigma^2, beta


@pytest.mark.parametrize("case", CASES)
def test_the_full_matrices_whiten_as_the_modes_say(case):
    """(U1) / (U2) on full matrices with X = I from a random start, no mode assumption: every nonzero eigenvalue of
    W Wᵀ goes to the closed-form s* of (U3) (which checks kappa and the power of tau of each form independently)."""
    params = UnifiedParams(lam=1.5, eta=0.2, sigma2=0.5, beta=0.5, **case)
    rng = np.random.default_rng(3)
    W0 = rng.normal(size=(4, 6)) * 0.5
    X = np.eye(6)

    def field(t, y):  # under stop-gradient the target is W itself
        dW, dWa = matrix_rates(y[0], y[1] if params.ema else y[0], params, X)
        return np.stack([dW, dWa])

    end = integrate.ode(field, np.stack([W0, W0]), 300.0, rtol=1e-10, atol=1e-12).final
    s = np.linalg.eigvalsh(end[0] @ end[0].T)
    np.testing.assert_allclose(s, params.s_star, rtol=1e-6)
    kappa = 1.0 if case["form"] == "barlowtwins" else 2.25
    assert params.s_star == pytest.approx(0.8 / (params.balance * kappa))


def test_sgd_approaches_the_flow_as_the_batch_grows():
    """Plain SGD with each batch's own F: the final eigenvalues of W Wᵀ approach s* as the batch grows."""
    params = UnifiedParams(form="unigrad", lam=2.0, eta=0.1, sigma2=0.5, ema=False)
    errors = {}
    for batch in (8, 512):
        rng = np.random.default_rng(0)
        W = rng.normal(size=(2, 4)) * 0.3
        for _ in range(1500):
            xb = rng.normal(size=(batch, 4))
            x1 = xb + np.sqrt(params.sigma2) * rng.normal(size=(batch, 4))
            x2 = xb + np.sqrt(params.sigma2) * rng.normal(size=(batch, 4))
            W = W - 0.02 * (sample_gradient(W, W, x1, x2, params) + params.eta * W)
        errors[batch] = np.abs(np.linalg.eigvalsh(W @ W.T) / params.s_star - 1).max()
    assert errors[512] < 0.05 and errors[512] < errors[8], errors


@pytest.mark.parametrize("kw,message", [
    ({"lam": 0.0}, "--lambda 0 is out of range"), ({"lam": "x"}, "--lambda 'x' is not a number"),
    ({"form": "byol"}, "--method 'byol' is not known: expected one of unigrad, vicreg, barlowtwins, simclr"),
])
def test_bad_constants_are_one_line(kw, message):
    with pytest.raises(ConfigError, match=message):
        UnifiedParams(**kw)


@pytest.mark.parametrize("case", [c for c in CASES if c["ema"]])
def test_the_modes_follow_the_full_matrices_along_the_way(case):
    """With X = I and W_a(0) = tau0 W(0) (Assumption 1 at the start), the eigenvalues of W Wᵀ on the full-matrix flow
    follow the decoupled modes (U3)-(U4) at every sampled time, transients included (kappa and the power of tau)."""
    params = UnifiedParams(lam=1.5, eta=0.1, sigma2=0.5, beta=0.3, **case)
    rng = np.random.default_rng(5)
    U, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    V, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    w = np.array([0.2, 0.7, 1.6])
    W0 = U @ np.diag(w) @ V[:3]
    tau0 = 0.4

    def field(t, y):
        return np.stack(matrix_rates(y[0], y[1], params, np.eye(5)))

    full = integrate.ode(field, np.stack([W0, tau0 * W0]), 20.0, samples=20, rtol=1e-11, atol=1e-13)
    modes = integrate.ode(mode_field(params), np.stack([w ** 2, np.full(3, tau0)], axis=-1), 20.0, samples=20,
                          rtol=1e-11, atol=1e-13)
    for k in range(len(full.t)):
        s_full = np.sort(np.linalg.eigvalsh(full.y[k, 0] @ full.y[k, 0].T))
        np.testing.assert_allclose(s_full, np.sort(modes.y[k, :, 0]), rtol=1e-6, atol=1e-9)
