"""The Fig. 5 setting (decoupled modes, Euler step alpha = 0.01) and finite-batch SGD against the ODE."""

from __future__ import annotations

import numpy as np
import pytest

from ssltheory.theory import integrate, modes
from ssltheory.theory.fixed_points import parabola_fixed_points
from ssltheory.theory.params import ModeParams, SimulationConfig
from ssltheory.theory.simulate import simulate

P0 = (0.01, 0.05, 0.1, 0.2, 0.3)


def fig5(eta: float):
    cfg = SimulationConfig(model="modes", params=ModeParams(eta=eta, beta=0.4, sigma2=0.5, alpha_p=1.0),
                           lr=0.01, steps=100_000, p0=P0, tau0=0.0, samples=50)
    return simulate(cfg)


def test_fig5_eta0_converges_to_one_over_one_plus_sigma2():
    r = fig5(0.0)
    np.testing.assert_allclose(r.summary["final_p"], 1 / 1.5, atol=1e-4)
    assert not any(r.summary["collapsed"])


def test_fig5_eta004_converges_to_p_plus_except_from_p0_001():
    r = fig5(0.04)
    _, pp = parabola_fixed_points(0.04, 1.0, 0.5)
    final_p = np.array(r.summary["final_p"])
    assert r.summary["collapsed"] == [True, False, False, False, False]
    np.testing.assert_allclose(final_p[1:], pp, atol=1e-4)
    assert abs(final_p[0]) < 1e-3
    # p0 = 0.01 starts below p*_-(tau = 1) = 0.0427 only because tau is small early on (Obs. #10) ...
    np.testing.assert_allclose(r.summary["final_tau"][1:], 1.0, atol=1e-4)


def test_fig5_eta01_collapses_from_every_p0_up_to_01():
    r = fig5(0.1)
    assert r.summary["collapsed"] == [True, True, True, False, False]
    _, pp = parabola_fixed_points(0.1, 1.0, 0.5)
    np.testing.assert_allclose(r.summary["final_p"][3:], pp, atol=1e-4)


def test_vectorized_integration_matches_one_solve_ivp_per_trajectory(rng):
    params = ModeParams(eta=0.04, beta=0.4, sigma2=0.5)
    n = 40
    p0, s0 = rng.uniform(0.0, 1.0, n), rng.uniform(0.0, 1.0, n)
    y0 = modes.pack(p0, s0, np.zeros(n))
    field = modes.mode_field(params)
    batch = integrate.ode(field, y0, 50.0, samples=5)
    for i in range(0, n, 7):
        one = integrate.ode(field, y0[:, i:i + 1], 50.0, samples=5)
        np.testing.assert_allclose(batch.y[:, :, i], one.y[:, :, 0], atol=1e-6)


def _sgd_vs_ode(predictor: str, batch: int, seed: int = 3) -> float:
    base = dict(params=ModeParams(eta=0.02, beta=0.4, predictor=predictor), lr=0.02, steps=2500, dim=4,
                init_scale=0.8, seed=seed, samples=50, batch=batch)
    sgd = simulate(SimulationConfig(model="sgd", **base)).series["s"]
    ode = simulate(SimulationConfig(model="matrix", **base)).series["s"]
    return float(np.max(np.abs(sgd - ode) / np.max(ode, axis=1, keepdims=True)))


@pytest.mark.parametrize("predictor", ["linear", "symmetric"])
def test_large_batch_sgd_follows_the_ode_eigenvalue_trajectory(predictor):
    small, large = _sgd_vs_ode(predictor, 256), _sgd_vs_ode(predictor, 4096)
    assert large < 0.01  # within 1% of the largest eigenvalue at every sample
    assert large < 0.6 * small  # and the gap is the minibatch noise: it shrinks as the batch grows
