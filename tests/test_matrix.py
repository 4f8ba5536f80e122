"""Theorems 1-3 on the full-matrix dynamics of Lemma 1."""

from __future__ import annotations

import numpy as np
import pytest

from ssltheory.theory import diagnostics, integrate, matrix
from ssltheory.theory.params import ModeParams


def run(params, n=6, t_end=50.0, seed=0, scale=0.5, y0=None, method="DOP853", samples=100, tol=1e-10):
    shapes = matrix.Shapes(n, n)
    X, Xp = matrix.isotropic_data(n, params.sigma2)
    if y0 is None:
        y0 = matrix.random_init(shapes, params, scale=scale, seed=seed)
    tr = integrate.ode(matrix.matrix_field(params, shapes, X, Xp), y0, t_end, method=method, samples=samples,
                       rtol=tol, atol=tol * 1e-2)
    return tr, diagnostics.trajectory_diagnostics(tr.t, tr.y, shapes, params, X), shapes


@pytest.mark.parametrize("eta,alpha_p,ema", [(0.0, 1.0, True), (0.01, 2.0, True), (0.05, 0.5, False),
                                              (0.01, 1.0, False)])
def test_theorem1_balance_holds_along_trajectories(eta, alpha_p, ema):
    params = ModeParams(alpha_p=alpha_p, eta=eta, sigma2=0.5, beta=0.4, ema=ema)
    tr, d, _ = run(params, t_end=60.0)
    assert np.max(d["theorem1"]) < 1e-6
    assert abs(d["norm_W"][-1] - d["norm_W"][0]) > 1e-2  # W did change


def test_theorem1_fails_when_predictor_decay_differs():
    """Negative control: the balance needs the same decay on W_p and W (Eq. 2 as printed)."""
    params = ModeParams(alpha_p=1.0, eta=0.01, eta_p=0.05, sigma2=0.5, beta=0.4)
    _, d, _ = run(params, t_end=60.0)
    assert np.max(d["theorem1"]) > 1e-3


@pytest.mark.parametrize("eta", [0.0, 0.01])
def test_theorem2_without_stop_gradient_W_collapses(eta):
    params = ModeParams(eta=eta, sigma2=0.5, ema=False, stop_grad=False)
    _, d, _ = run(params, t_end=60.0, method="RK45", tol=1e-8)
    assert d["norm_W"][-1] < 1e-6 * d["norm_W"][0]
    # With the stop-gradient, the same start keeps a non-trivial W (control).
    _, d_sg, _ = run(params.replace(stop_grad=True), t_end=60.0, method="RK45", tol=1e-8)
    assert d_sg["norm_W"][-1] > 0.1 * d_sg["norm_W"][0]


@pytest.mark.parametrize("ema,stop_grad", [(False, True), (False, False), (True, True)])
def test_without_predictor_W_collapses(ema, stop_grad):
    params = ModeParams(eta=0.0, sigma2=0.5, beta=0.4, ema=ema, stop_grad=stop_grad, predictor="none")
    _, d, _ = run(params, t_end=120.0, method="RK45", tol=1e-8)
    assert d["norm_W"][-1] < 1e-4 * d["norm_W"][0]


def test_theorem3_commutator_decays_at_the_rate_of_K_and_alignment_goes_to_one():
    """Symmetrised flow (Eq. 7, SimSiam so tau = 1) from a start where K stays positive definite."""
    n = 6
    params = ModeParams(alpha_p=1.0, eta=0.0, sigma2=0.5, ema=False, predictor="symmetric")
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    W_p = (Q * np.linspace(0.7, 4.0, n)) @ Q.T  # eigenvalues above 1/(1+sigma^2): K > 0, not aligned with F
    W = rng.standard_normal((n, n)) * 0.8
    _, d, _ = run(params, y0=matrix.pack(W, W_p, W.copy()), t_end=40.0, samples=200)
    lam0 = np.min(d["lambda_min_K"])
    assert lam0 > 0.05
    c = d["commutator"]
    bound = c[0] * np.exp(-2 * lam0 * np.linspace(0, 40.0, len(c)))
    # Theorem 3's bound, down to the integrator's error floor (rtol 1e-10 on entries of size ~1).
    assert np.all(c <= bound * (1 + 1e-6) + 1e-7)
    assert c[0] > 1.0 and c[-1] < 1e-8 * c[0]
    # Alignment is defined on modes whose eigenvalue of F is distinct: here three modes collapse onto the
    # attracting part of s = 0 (p > 1/(1+sigma^2)), where F's eigenvectors are arbitrary.
    live = d["s"][-1] > 1e-3 * d["s"][-1][0]
    assert live.sum() == 3
    assert np.min(d["alignment"][0]) < 0.95  # not aligned at the start ...
    assert np.min(d["alignment"][-1][live]) > 1 - 1e-9  # ... aligned at the end
    np.testing.assert_allclose(d["p_rayleigh"][-1][live], 1 / 1.5, rtol=1e-6)  # on the eta = 0 branch
    assert np.max(d["asymmetry"]) < 1e-12


def test_directpred_predictor_commutes_with_F_and_has_the_code_eigenvalues():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    F = A @ A.T
    W_p = matrix.directpred_matrix(F, eps=0.1)
    assert np.linalg.norm(F @ W_p - W_p @ F) < 1e-10 * np.linalg.norm(F)
    s = np.linalg.eigvalsh(F)
    np.testing.assert_allclose(np.linalg.eigvalsh(W_p), np.sqrt(s / s.max()) + 0.1, rtol=1e-10)


def test_theorem1_holds_for_any_psd_data_and_augmentation_covariances():
    """Lemma 1 takes any PSD X and X'; Theorem 1 does not need the isotropic model."""
    rng = np.random.default_rng(7)
    n1, n2 = 5, 3
    A, B = rng.standard_normal((n1, n1)), rng.standard_normal((n1, 2))
    X, Xp = A @ A.T / n1, 0.3 * B @ B.T  # full-rank data, rank-2 augmentation noise
    params = ModeParams(alpha_p=1.5, eta=0.02, beta=0.4, ema=True)
    shapes = matrix.Shapes(n1, n2)
    y0 = matrix.random_init(shapes, params, scale=0.7, seed=2)
    tr = integrate.ode(matrix.matrix_field(params, shapes, X, Xp), y0, 40.0, method="DOP853", samples=40,
                       rtol=1e-10, atol=1e-12)
    d = diagnostics.trajectory_diagnostics(tr.t, tr.y, shapes, params, X)
    assert np.max(d["theorem1"]) < 1e-6
    assert d["s"].shape == (40, n2) and abs(d["norm_W"][-1] - d["norm_W"][0]) > 1e-2
