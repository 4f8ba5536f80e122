"""Run one :class:`~ssltheory.theory.params.SimulationConfig` at its level of description and return arrays.

- ``modes``: the decoupled eigen-modes, one per entry of ``p0`` (s0 on the invariant parabola by default).
- ``matrix``: Lemma 1's full-matrix ODE from a random start (``dim`` = n1 = n2), with diagnostics.
- ``sgd``: finite-batch SGD on the two-layer linear network from the same random start.
- ``reduced``: the (W_p, F) flows of App. B at fixed tau (``params.tau_fixed``, default 1): Eq. 62 with a linear
  predictor (Fig. 8), Eq. 67 with a symmetric one (Fig. 9).

No I/O: the command line saves and draws what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import diagnostics, integrate, matrix, modes, reduced, sgd
from .fixed_points import collapse_threshold, parabola_fixed_points
from .params import SimulationConfig

Array = np.ndarray
COLLAPSE_S = 1e-6
"""A mode counts as collapsed when its s_j ends below this (the paper's s -> 0)."""


@dataclass
class SimulationResult:
    """Trajectories and per-mode summaries.

    ``t``: (T,) continuous time. ``series``: named arrays with leading axis T; for ``modes`` these are ``p``, ``s``,
    ``tau``, ``p_eff`` (the predictor eigenvalue in use), ``offset`` (s - p^2/alpha_p) and ``k_eig`` (K's
    eigenvalue per mode), each (T, n_modes); for ``matrix``/``sgd`` the diagnostics of
    :func:`~ssltheory.theory.diagnostics.trajectory_diagnostics`. ``summary``: JSON-ready numbers.
    """

    config: SimulationConfig
    t: Array
    series: dict[str, Array]
    summary: dict = field(default_factory=dict)


def simulate(config: SimulationConfig, on_progress: Callable[[float], None] | None = None) -> SimulationResult:
    """Integrate ``config`` and return its :class:`SimulationResult`."""
    if config.model == "modes":
        return _simulate_modes(config, on_progress)
    if config.model == "reduced":
        return _simulate_reduced(config, on_progress)
    return _simulate_matrix(config, on_progress)


def _simulate_reduced(config: SimulationConfig, on_progress) -> SimulationResult:
    a = config.params
    tau = 1.0 if a.tau_fixed is None else a.tau_fixed
    y0 = reduced.reduced_init(config.dim, a, scale=config.init_scale, seed=config.seed)
    traj = integrate.integrate(reduced.reduced_field(a, tau), y0, dt=config.lr, steps=config.steps,
                               method=config.integrator, samples=config.samples, on_progress=on_progress)
    d = reduced.reduced_diagnostics(traj.y)
    summary = {"tau": tau, "flow": "Eq. 67 (symmetrised)" if a.predictor == "symmetric" else "Eq. 62",
               "start_norm_A": float(d["norm_A"][0]), "final_norm_A": float(d["norm_A"][-1]),
               "start_norm_B": float(d["norm_B"][0]), "final_norm_B": float(d["norm_B"][-1]),
               "start_commutator": float(d["commutator"][0]), "final_commutator": float(d["commutator"][-1]),
               "max_commutator": float(np.max(d["commutator"])), "final_s": d["s"][-1].tolist()}
    return SimulationResult(config, traj.t, d, summary)


def mode_initial_state(config: SimulationConfig) -> Array:
    """Packed (3, n_modes) start: p0, s0 (default p0^2 / alpha_p, on the parabola) and tau0."""
    a = config.params
    p0 = np.asarray(config.p0, float)
    if config.s0 is not None:
        s0 = np.asarray(config.s0, float)
    else:
        s0 = p0 ** 2 / a.alpha_p if a.alpha_p > 0 else np.ones_like(p0)
    tau = modes.initial_tau(a, config.tau0, p0.shape)
    return modes.pack(p0, s0, tau)


def _simulate_modes(config: SimulationConfig, on_progress) -> SimulationResult:
    a = config.params
    traj = integrate.integrate(modes.mode_field(a), mode_initial_state(config), dt=config.lr, steps=config.steps,
                               method=config.integrator, samples=config.samples, on_progress=on_progress)
    p, s, tau = traj.y[:, 0], traj.y[:, 1], traj.y[:, 2]
    p_eff = modes.effective_p(p, s, a)
    series = {"p": p, "s": s, "tau": tau, "p_eff": p_eff,
              "offset": modes.parabola_offset(p_eff, s, a.alpha_p) if a.alpha_p > 0 else np.zeros_like(s),
              "k_eig": modes.k_eigenvalue(p, s, tau, a)}
    pm, pp = parabola_fixed_points(a.eta, 1.0, a.sigma2)
    summary = {
        "p0": list(config.p0),
        "final_p": p_eff[-1].tolist(),
        "final_s": s[-1].tolist(),
        "final_tau": tau[-1].tolist(),
        "collapsed": (s[-1] < COLLAPSE_S).tolist(),
        "min_k_eig": np.min(series["k_eig"], axis=0).tolist(),
        "theory": {"p_star_minus_at_tau_1": pm, "p_star_plus_at_tau_1": pp,
                   "collapse_threshold_eta_at_tau_1": collapse_threshold(1.0, a.sigma2)},
    }
    return SimulationResult(config, traj.t, series, summary)


def _simulate_matrix(config: SimulationConfig, on_progress) -> SimulationResult:
    a = config.params
    shapes = matrix.Shapes(config.dim, config.dim)
    X, Xp = matrix.isotropic_data(config.dim, a.sigma2)
    y0 = matrix.random_init(shapes, a, scale=config.init_scale, seed=config.seed)
    if config.model == "sgd":
        traj = sgd.run_sgd(a, y0, shapes, lr=config.lr, steps=config.steps, batch=config.batch, rho=config.rho,
                           seed=config.seed + 1, samples=config.samples, on_progress=on_progress)
    else:
        post = _symmetrise(shapes) if a.predictor == "symmetric" else None
        traj = integrate.integrate(matrix.matrix_field(a, shapes, X, Xp), y0, dt=config.lr, steps=config.steps,
                                   method=config.integrator, samples=config.samples, on_progress=on_progress,
                                   post_step=post)
    diag = diagnostics.trajectory_diagnostics(traj.t, traj.y, shapes, a, X)
    summary = {
        "final_s": diag["s"][-1].tolist(),
        "final_p_sym": diag["p_sym"][-1].tolist(),
        "final_alignment": diag["alignment"][-1].tolist(),
        "final_commutator": float(diag["commutator"][-1]),
        "final_asymmetry": float(diag["asymmetry"][-1]),
        "final_norm_W": float(diag["norm_W"][-1]),
        "max_theorem1_residual": float(np.nanmax(diag["theorem1"])),
        "min_lambda_min_K": float(np.min(diag["lambda_min_K"])),
        "collapsed_modes": int(np.sum(diag["s"][-1] < COLLAPSE_S)),
    }
    return SimulationResult(config, traj.t, diag, summary)


def _symmetrise(shapes: matrix.Shapes):
    """Euler post-step that keeps W_p exactly symmetric against round-off."""

    def post(y: Array) -> Array:
        W, W_p, W_a = matrix.unpack(y, shapes)
        return matrix.pack(W, diagnostics.sym(W_p), W_a)

    return post
