"""Run one :class:`~ssltheory.theory.params.SimulationConfig` at its level of description and return arrays.

- ``modes``: the decoupled eigen-modes, one per entry of ``p0`` (s0 on the invariant parabola by default).
- ``matrix``: Lemma 1's full-matrix ODE from a random start (``dim`` = n1 = n2), with diagnostics.
- ``sgd``: finite-batch SGD on the two-layer linear network from the same random start.
- ``reduced``: the (W_p, F) flows of App. B at fixed tau (``params.tau_fixed``, default 1): Eq. 62 with a linear
  predictor (Fig. 8), Eq. 67 with a symmetric one (Fig. 9).

No I/O: the command line saves and draws what comes back.

Divergence: a trajectory whose state stops being finite (the Euler or SGD step is too large for the constants, or
a start far from the fixed points) is *diverged*, never "collapsed" or "not collapsed". The summary says so per
mode (``modes``: ``diverged``, ``diverged_by_t``, ``outcome``) or per run (the other models: ``diverged``,
``diverged_by_t``; their diagnostics are computed on the finite samples and NaN after). ``diverged_by_t`` is the
first kept sample that is not finite, so the state blew up at or before that time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import diagnostics, integrate, matrix, modes, reduced, sgd
from .fixed_points import collapse_threshold, parabola_fixed_points
from .params import SimulationConfig
from .resources import check_memory

Array = np.ndarray
COLLAPSE_S = 1e-6
"""A mode counts as collapsed when its s_j ends below this (the paper's s -> 0)."""
BLOWUP = 1e30
"""A state with an entry beyond this in magnitude counts as diverged, like a non-finite one. The fixed points are
O(1), so such a run has escaped; and the diagnostics raise the state to the 8th power (the norm of [F, W_p] with
F = W X W^T squares a degree-4 product), which must stay below float64's 1.8e308."""


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
    """Integrate ``config`` and return its :class:`SimulationResult`.

    Refuses (:class:`~ssltheory.theory.checks.ConfigError`) a run whose estimated memory exceeds the limit of
    :func:`~ssltheory.theory.resources.check_memory`, before allocating anything.
    """
    check_memory(config)
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
    ok = _finite_samples(traj.y)
    d = _pad(reduced.reduced_diagnostics(traj.y[:ok]), len(traj.t))
    summary = {"tau": tau, "flow": "Eq. 67 (symmetrised)" if a.predictor == "symmetric" else "Eq. 62",
               "start_norm_A": float(d["norm_A"][0]), "final_norm_A": float(d["norm_A"][-1]),
               "start_norm_B": float(d["norm_B"][0]), "final_norm_B": float(d["norm_B"][-1]),
               "start_commutator": float(d["commutator"][0]), "final_commutator": float(d["commutator"][-1]),
               "max_commutator": float(np.max(d["commutator"][:ok])), "final_s": d["s"][-1].tolist(),
               **_divergence(traj.t, ok)}
    return SimulationResult(config, traj.t, d, summary)


def mode_initial_state(config: SimulationConfig) -> Array:
    """Packed (3, n_modes) start: p0, s0 (default p0^2 / alpha_p, on the parabola) and tau0."""
    a = config.params
    p0 = np.asarray(config.p0, float)
    if config.s0 is not None:
        s0 = np.asarray(config.s0, float)
    else:
        s0 = p0 ** 2 / a.alpha_p  # alpha_p > 0: ModeParams refuses 0 (the parabola would not exist)
    tau = modes.initial_tau(a, config.tau0, p0.shape)
    return modes.pack(p0, s0, tau)


def _simulate_modes(config: SimulationConfig, on_progress) -> SimulationResult:
    a = config.params
    traj = integrate.integrate(modes.mode_field(a), mode_initial_state(config), dt=config.lr, steps=config.steps,
                               method=config.integrator, samples=config.samples, on_progress=on_progress)
    p, s, tau = traj.y[:, 0], traj.y[:, 1], traj.y[:, 2]
    with np.errstate(over="ignore", invalid="ignore"):
        p_eff = modes.effective_p(p, s, a)
        series = {"p": p, "s": s, "tau": tau, "p_eff": p_eff,
                  "offset": modes.parabola_offset(p_eff, s, a.alpha_p), "k_eig": modes.k_eigenvalue(p, s, tau, a)}
    # A mode is diverged when any of (p, s, tau) is not finite at the end. Its s is NaN, and NaN < COLLAPSE_S is
    # False, so without this it would read "not collapsed": it gets its own outcome instead.
    finite = _sane(traj.y).all(axis=1)  # (T, n_modes)
    diverged = ~finite[-1]
    first_bad = np.argmin(finite, axis=0)
    collapsed = (s[-1] < COLLAPSE_S) & ~diverged
    k_eig = np.where(finite, series["k_eig"], np.inf)
    pm, pp = parabola_fixed_points(a.eta, 1.0, a.sigma2)
    summary = {
        "p0": list(config.p0),
        "final_p": p_eff[-1].tolist(),
        "final_s": s[-1].tolist(),
        "final_tau": tau[-1].tolist(),
        "collapsed": collapsed.tolist(),
        "diverged": diverged.tolist(),
        "diverged_by_t": [float(traj.t[i]) if d else None for i, d in zip(first_bad, diverged, strict=True)],
        "outcome": ["diverged" if d else "collapsed" if c else "not collapsed"
                    for d, c in zip(diverged, collapsed, strict=True)],
        "min_k_eig": np.min(k_eig, axis=0).tolist(),
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
    ok = _finite_samples(traj.y)
    diag = _pad(diagnostics.trajectory_diagnostics(traj.t[:ok], traj.y[:ok], shapes, a, X), len(traj.t))
    summary = {
        "final_s": diag["s"][-1].tolist(),
        "final_p_sym": diag["p_sym"][-1].tolist(),
        "final_alignment": diag["alignment"][-1].tolist(),
        "final_commutator": float(diag["commutator"][-1]),
        "final_asymmetry": float(diag["asymmetry"][-1]),
        "final_norm_W": float(diag["norm_W"][-1]),
        "max_theorem1_residual": float(np.max(diag["theorem1"][:ok])),
        # Theorem 1 holds for the flow; the number above is for the integrator that ran (see theorem1_note).
        "theorem1_integrator": "sgd" if config.model == "sgd" else config.integrator,
        "theorem1_note": theorem1_note(config),
        "min_lambda_min_K": float(np.min(diag["lambda_min_K"][:ok])),
        "collapsed_modes": int(np.sum(diag["s"][-1] < COLLAPSE_S)),
        **_divergence(traj.t, ok),
    }
    return SimulationResult(config, traj.t, diag, summary)


def theorem1_note(config: SimulationConfig) -> str:
    """Which integrator the Theorem 1 residual of a full-matrix or SGD run is for, and what that integrator gives.

    Theorem 1 is exact for the flow: solve_ivp (rk45, dop853) keeps the residual below 1e-6 with the tolerances used
    here. Euler of step alpha = lr breaks the balance by O(alpha) per unit time (5.6e-4 at the defaults, alpha =
    0.01); SGD adds minibatch noise on top.
    """
    if config.model == "sgd":
        return (f"sgd with lr {config.lr:g} and batch {config.batch}: Euler's O(lr) plus minibatch noise; the flow "
                "(solve_ivp rk45/dop853) keeps it < 1e-6")
    if config.integrator == "euler":
        return f"euler with step {config.lr:g}: O(step) error; the flow (solve_ivp rk45/dop853) keeps it < 1e-6"
    return f"solve_ivp {config.integrator} (rtol 1e-9): < 1e-6 for the flow"


def _sane(y: Array) -> Array:
    """Elementwise: finite and at most :data:`BLOWUP` in magnitude."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(y) & (np.abs(y) <= BLOWUP)


def _finite_samples(y: Array) -> int:
    """How many leading samples of a trajectory (T, ...) are finite (and below :data:`BLOWUP`) everywhere."""
    bad = ~_sane(y.reshape(len(y), -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else len(y)


def _pad(series: dict[str, Array], length: int) -> dict[str, Array]:
    """Series of the finite samples, with NaN rows appended up to ``length`` (the samples after a divergence)."""
    out = {}
    for k, v in series.items():
        v = np.asarray(v, float)
        if len(v) < length:
            v = np.concatenate([v, np.full((length - len(v), *v.shape[1:]), np.nan)])
        out[k] = v
    return out


def _divergence(t: Array, ok: int) -> dict:
    """Summary entries of a run whose first ``ok`` samples are finite."""
    diverged = ok < len(t)
    return {"diverged": diverged, "diverged_by_t": float(t[ok]) if diverged else None}


def _symmetrise(shapes: matrix.Shapes):
    """Euler post-step that keeps W_p exactly symmetric against round-off."""

    def post(y: Array) -> Array:
        W, W_p, W_a = matrix.unpack(y, shapes)
        return matrix.pack(W, diagnostics.sym(W_p), W_a)

    return post
