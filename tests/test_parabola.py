"""Eq. 14: s - p^2/alpha_p is conserved without weight decay and decays as e^{-2 eta t} with it."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import integrate_modes
from ssltheory.theory.modes import parabola_offset
from ssltheory.theory.params import ModeParams

STARTS = dict(p0=[0.02, 0.1, 0.4, 0.9, -0.2], s0=[0.05, 0.001, 0.3, 0.5, 0.2])


@pytest.mark.parametrize("alpha_p", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("ema", [True, False])
def test_offset_is_conserved_without_weight_decay(alpha_p, ema):
    params = ModeParams(alpha_p=alpha_p, eta=0.0, sigma2=0.5, beta=0.4, ema=ema)
    t, p, s, _ = integrate_modes(params, STARTS["p0"], STARTS["s0"], t_end=300.0)
    c = parabola_offset(p, s, alpha_p)
    scale = np.maximum(np.abs(c[0]), np.max(np.abs(s), axis=0))
    assert np.max(np.abs(c - c[0]) / scale) < 1e-6
    assert np.ptp(p[:, 2]) > 0.1  # the states did move


@pytest.mark.parametrize("eta", [0.01, 0.04, 0.1])
@pytest.mark.parametrize("alpha_p", [0.5, 2.0])
def test_offset_decays_as_exp_minus_two_eta_t(eta, alpha_p):
    params = ModeParams(alpha_p=alpha_p, eta=eta, sigma2=0.5, beta=0.4, ema=True)
    t, p, s, _ = integrate_modes(params, STARTS["p0"], STARTS["s0"], t_end=100.0)
    c = parabola_offset(p, s, alpha_p)
    predicted = c[0] * np.exp(-2 * eta * t)[:, None]
    assert np.max(np.abs(c - predicted) / np.abs(c[0])) < 1e-6


def test_offset_is_not_conserved_when_predictor_decay_differs():
    """Negative control: with eta_p != eta the integral of Eq. 14 does not exist, and the test would see it."""
    params = ModeParams(alpha_p=1.0, eta=0.0, eta_p=0.05, sigma2=0.5, ema=False)
    t, p, s, _ = integrate_modes(params, STARTS["p0"], STARTS["s0"], t_end=100.0)
    c = parabola_offset(p, s, 1.0)
    assert np.max(np.abs(c - c[0])) > 1e-3
