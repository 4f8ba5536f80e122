"""Closed-form fixed points against integrated trajectories, and stability labels against nearby flows."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conftest import integrate_modes
from ssltheory.theory.fixed_points import (
    FixedLine,
    FixedPoint,
    collapse_threshold,
    fixed_points,
    parabola_fixed_points,
    parabola_points,
)
from ssltheory.theory.params import ModeParams

GRID = list(itertools.product([0.25, 0.5, 0.9], [0.5, 1.0, 4.0], [0.6, 1.0], [0.0, 0.5]))
"""(eta as a fraction of the collapse threshold, alpha_p, tau, sigma^2)."""


@pytest.mark.parametrize("frac,alpha_p,tau,sigma2", GRID)
def test_p_plus_is_the_limit_from_above_p_minus(frac, alpha_p, tau, sigma2):
    eta = frac * collapse_threshold(tau, sigma2)
    params = ModeParams(alpha_p=alpha_p, eta=eta, sigma2=sigma2, ema=False, tau_fixed=tau)
    pm, pp = parabola_fixed_points(eta, tau, sigma2)
    assert 0 < pm < pp
    # Starts between p*- and p*+, above p*+, and off the parabola (both sides).
    p0 = np.array([pm + 0.1 * (pp - pm), 0.5 * (pm + pp), 1.5 * pp, 1.2 * pp, 0.9 * pp])
    s0 = p0 ** 2 / alpha_p * np.array([1.0, 1.0, 1.0, 1.5, 1.3])
    _, p, s, _ = integrate_modes(params, p0, s0, t_end=4000.0)
    np.testing.assert_allclose(p[-1], pp, rtol=1e-6)
    np.testing.assert_allclose(s[-1], pp ** 2 / alpha_p, rtol=1e-5)


@pytest.mark.parametrize("frac,alpha_p,tau,sigma2", GRID[:12])
def test_below_p_minus_on_the_parabola_collapses(frac, alpha_p, tau, sigma2):
    eta = frac * collapse_threshold(tau, sigma2)
    params = ModeParams(alpha_p=alpha_p, eta=eta, sigma2=sigma2, ema=False, tau_fixed=tau)
    pm, _ = parabola_fixed_points(eta, tau, sigma2)
    p0 = np.array([0.5 * pm, 0.9 * pm])
    _, p, s, _ = integrate_modes(params, p0, p0 ** 2 / alpha_p, t_end=3000.0)
    assert np.all(np.abs(p[-1]) < 1e-4) and np.all(s[-1] < 1e-8)


@pytest.mark.parametrize("alpha_p,tau,sigma2", [(1.0, 1.0, 0.5), (2.0, 0.7, 0.0), (0.5, 1.0, 1.0)])
def test_above_threshold_every_start_collapses(alpha_p, tau, sigma2):
    eta = 1.05 * collapse_threshold(tau, sigma2)
    assert math.isnan(parabola_fixed_points(eta, tau, sigma2)[0])
    params = ModeParams(alpha_p=alpha_p, eta=eta, sigma2=sigma2, ema=False, tau_fixed=tau)
    p0 = np.array([0.1, 0.5, 1.0, 2.0])
    _, p, s, _ = integrate_modes(params, p0, p0 ** 2 / alpha_p + 0.1, t_end=6000.0)
    assert np.all(s[-1] < 1e-6)
    assert [fp.kind for fp in fixed_points(params, tau=tau)] == ["stable"]


@pytest.mark.parametrize("alpha_p,tau,sigma2", [(1.0, 1.0, 0.5), (3.0, 0.8, 0.0), (0.5, 1.0, 1.0)])
def test_eta_zero_limit_is_tau_over_one_plus_sigma2_with_s_from_the_conserved_offset(alpha_p, tau, sigma2):
    params = ModeParams(alpha_p=alpha_p, eta=0.0, sigma2=sigma2, ema=False, tau_fixed=tau)
    p0 = np.array([0.05, 0.3, 1.2])
    s0 = np.array([0.5, 0.2, 2.0])
    _, p, s, _ = integrate_modes(params, p0, s0, t_end=3000.0)
    p_inf = tau / (1 + sigma2)
    c = s0 - p0 ** 2 / alpha_p  # conserved: s = p^2 / alpha_p + c
    reaches_line = c + p_inf ** 2 / alpha_p > 0
    # Obs. #2: where the parabola s = p^2/alpha_p + c crosses p = tau/(1+sigma^2) above s = 0, the mode ends
    # there with s(inf) = s(0) + (p(inf)^2 - p(0)^2) / alpha_p; otherwise it lands on the collapsed line s = 0
    # at p = sqrt(-c alpha_p) (attracting there, since that p exceeds tau/(1+sigma^2)).
    p_expected = np.where(reaches_line, p_inf, np.sqrt(np.abs(c) * alpha_p))
    s_expected = np.where(reaches_line, s0 + (p_inf ** 2 - p0 ** 2) / alpha_p, 0.0)
    assert reaches_line.any() and (~reaches_line).any() if alpha_p < 1 else reaches_line.all()
    np.testing.assert_allclose(p[-1], p_expected, rtol=1e-6)
    np.testing.assert_allclose(s[-1], s_expected, rtol=1e-6, atol=1e-9)


def _perturbed_limits(params, fp, tau, radius, t_end, three_d):
    """Integrate from 8 points on a small circle around a fixed point; returns (start, end) distances."""
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    scale = np.array([max(abs(fp.p), 0.05), max(abs(fp.s), 0.05)])
    p0 = fp.p + radius * scale[0] * np.cos(ang)
    s0 = np.maximum(fp.s + radius * scale[1] * np.sin(ang), 0.0)
    _, p, s, _ = integrate_modes(params, p0, s0, tau0=fp.tau if three_d else 0.0, t_end=t_end)
    d0 = np.hypot((p0 - fp.p) / scale[0], (s0 - fp.s) / scale[1])
    d1 = np.hypot((p[-1] - fp.p) / scale[0], (s[-1] - fp.s) / scale[1])
    return d0, d1


@pytest.mark.parametrize("frac,alpha_p,tau,sigma2", GRID[::3])
def test_stability_labels_match_where_nearby_trajectories_go(frac, alpha_p, tau, sigma2):
    eta = frac * collapse_threshold(tau, sigma2)
    params = ModeParams(alpha_p=alpha_p, eta=eta, sigma2=sigma2, ema=False, tau_fixed=tau)
    fps = fixed_points(params, tau=tau)
    assert [fp.kind for fp in fps] == ["stable", "saddle", "stable"]  # origin, p*-, p*+
    for fp in fps:
        d0, d1 = _perturbed_limits(params, fp, tau, 1e-3, 3000.0, False)
        if fp.kind == "stable":
            assert np.all(d1 < 1e-3 * d0), (fp, d1)
        else:  # saddle: some neighbours leave, and by more than the start distance
            assert np.any(d1 > 100 * d0), (fp, d1)


def test_ema_three_d_fixed_points_and_their_stability():
    """With EMA the non-collapsed fixed points have tau = 1; p*+ attracts, p*- does not."""
    params = ModeParams(alpha_p=1.0, eta=0.04, sigma2=0.5, beta=0.4, ema=True)
    fps = [fp for fp in fixed_points(params) if isinstance(fp, FixedPoint)]
    pm, pp = parabola_fixed_points(0.04, 1.0, 0.5)
    by_p = {round(fp.p, 9): fp for fp in fps}
    assert by_p[round(pp, 9)].tau == 1.0 and by_p[round(pp, 9)].kind == "stable"
    assert by_p[round(pm, 9)].kind in ("saddle", "unstable")
    origin = by_p[0.0]
    assert origin.tau == pytest.approx(0.4 / (0.4 - 0.04))
    for fp in (by_p[round(pp, 9)], by_p[round(pm, 9)]):
        d0, d1 = _perturbed_limits(params, fp, 1.0, 1e-3, 3000.0, True)
        assert np.all(d1 < 1e-3 * d0) if fp.kind == "stable" else np.any(d1 > 100 * d0)


def test_eta_zero_lines_of_fixed_points_have_the_derived_transverse_stability():
    params = ModeParams(alpha_p=1.0, eta=0.0, sigma2=0.5, ema=False, tau_fixed=1.0)
    lines = fixed_points(params, tau=1.0)
    assert all(isinstance(fp, FixedLine) for fp in lines)
    kinds = {(fp.name, fp.p): fp.kind for fp in lines}
    assert kinds[("s = 0", (0.0, 2 / 3))] == "unstable"
    assert kinds[("p = tau/(1+sigma^2)", (2 / 3, 2 / 3))] == "stable"
    # Off the repelling segment s grows; off the attracting ones it shrinks back toward 0.
    _, _, s, _ = integrate_modes(params, [0.3, 1.0, -0.2], [1e-6, 1e-6, 1e-6], t_end=5.0)
    assert s[-1][0] > 1e-6 and s[-1][1] < 1e-6 and s[-1][2] < 1e-6


def test_parabola_flow_fixed_points_of_the_three_regimes():
    thr = collapse_threshold(1.0, 0.5)
    assert thr == pytest.approx(1 / 6)
    assert [(round(f["p"], 6), f["kind"]) for f in parabola_points(0.0, 1.0, 0.5)] == [
        (0.0, "semi-stable"), (round(2 / 3, 6), "stable")]
    mid = parabola_points(0.5 * thr, 1.0, 0.5)
    assert [f["kind"] for f in mid] == ["stable", "unstable", "stable"]
    assert [f["kind"] for f in parabola_points(2 * thr, 1.0, 0.5)] == ["stable"]
    # The Fig. 5 numbers of the reference: p*- = 0.0427, p*+ = 0.6239 at eta = 0.04.
    pm, pp = parabola_fixed_points(0.04, 1.0, 0.5)
    assert (round(pm, 4), round(pp, 4)) == (0.0427, 0.6239)
