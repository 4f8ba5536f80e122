"""Shared helpers for the tests."""

from __future__ import annotations

import numpy as np
import pytest

from ssltheory.theory import integrate, modes
from ssltheory.theory.params import ModeParams


def integrate_modes(params: ModeParams, p0, s0, tau0=0.0, t_end=200.0, samples=200, method="DOP853"):
    """Integrate decoupled modes from arrays p0, s0 with tight tolerances; returns (t, p, s, tau)."""
    p0 = np.asarray(p0, float)
    y0 = modes.pack(p0, np.asarray(s0, float), modes.initial_tau(params, tau0, p0.shape))
    tr = integrate.ode(modes.mode_field(params), y0, t_end, method=method, samples=samples, rtol=1e-10, atol=1e-13)
    return tr.t, tr.y[:, 0], tr.y[:, 1], tr.y[:, 2]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
