"""ssltheory.theory: the two-layer linear BYOL/SimSiam dynamics of Tian, Chen & Ganguli (2021), and UniGrad's
unified gradient forms in the same model (Tao et al. 2022).

Modules: ``params`` (constants and validation), ``modes`` (decoupled eigen-modes), ``matrix`` (Lemma 1),
``sgd`` (finite-batch SGD), ``integrate`` (solve_ivp / Euler), ``fixed_points``, ``diagnostics``, ``simulate``
(one config at any level), ``unified`` (UniGrad's forms), ``plots``, ``io`` (atomic writes), ``outputs`` (the theory
commands' files, as library calls).

The names below are the notebook API (``docs/api.md`` has an example of each); they are stable. numpy, scipy and
matplotlib only: importing this package never imports torch.

Units: time ``t`` is the ODE's continuous time, ``t = step * lr`` of the discrete process (``lr`` the Euler step
alpha); ``p`` the eigenvalues of the predictor W_p, ``s`` those of F = W X Wᵀ (the input correlation seen through the
online network), ``tau`` = W_a / W per mode (the EMA target's ratio), all dimensionless.
"""

from __future__ import annotations

from collections.abc import Sequence

from .checks import ConfigError, RunError
from .fixed_points import FixedLine, FixedPoint, collapse_threshold, invariant_parabola, parabola_fixed_points
from .fixed_points import fixed_points as find_fixed_points
from .params import ModeParams, SimulationConfig
from .plots import draw_phase_portrait, phase_portrait_figure
from .simulate import SimulationResult
from .simulate import simulate as run_simulation
from .unified import UnifiedParams
from .unified import fixed_points as find_unified_fixed_points
from .unified_outputs import UNIFIED_S0, UnifiedRun, simulate_unified
from .unified_plots import draw_unified_portrait

__all__ = [
    "ConfigError", "RunError", "ModeParams", "SimulationConfig", "SimulationResult", "UnifiedParams", "UnifiedRun",
    "FixedPoint", "FixedLine", "integrate_modes", "integrate_matrices", "integrate_unified", "run_simulation",
    "simulate_unified", "find_fixed_points", "find_unified_fixed_points", "collapse_threshold",
    "parabola_fixed_points", "invariant_parabola", "draw_phase_portrait", "phase_portrait_figure",
    "draw_unified_portrait",
]


def integrate_modes(params: ModeParams | None = None, p0: Sequence[float] = (0.01, 0.05, 0.1, 0.2, 0.3),
                    s0: Sequence[float] | None = None, *, tau0: float = 0.0, lr: float = 0.01, steps: int = 100_000,
                    integrator: str = "euler", samples: int = 400) -> SimulationResult:
    """Integrate the decoupled eigen-modes (Eqs. 11-13), one mode per entry of ``p0``.

    ``params``: the constants (default :class:`ModeParams`, Fig. 5's beta = 0.4, eta = 0.04, sigma^2 = 0.5).
    ``p0``: (M,) initial predictor eigenvalues; ``s0``: (M,) initial eigenvalues of F, default on the invariant
    parabola p0² / alpha_p; ``tau0``: the initial W_a / W under EMA (ignored without EMA or with ``tau_fixed``).
    ``lr``: the Euler step alpha (the time unit: t = step * lr); ``steps``: how many, so t runs to ``steps * lr``;
    ``integrator``: ``euler`` (the discrete process) or a ``solve_ivp`` method (``rk45``, ``dop853``, ``lsoda``)
    integrating the flow to the same end time; ``samples``: how many times are kept.

    Returns a :class:`SimulationResult`: ``t`` (T,) with T = ``samples``; ``series["p"]``, ``["s"]``, ``["tau"]``,
    ``["p_eff"]`` (the predictor eigenvalue in use), ``["offset"]`` (s - p²/alpha_p), ``["k_eig"]``, each (T, M);
    ``summary``: final values, outcome per mode (``collapsed``, ``not collapsed``, ``diverged``), p*_± at tau = 1.
    Bad constants raise :class:`ConfigError` before anything runs.
    """
    config = SimulationConfig(model="modes", params=params or ModeParams(), lr=lr, steps=steps,
                              integrator=integrator, p0=tuple(float(v) for v in p0),
                              s0=None if s0 is None else tuple(float(v) for v in s0), tau0=tau0, samples=samples)
    return run_simulation(config)


def integrate_matrices(params: ModeParams | None = None, dim: int = 8, *, lr: float = 0.01, steps: int = 10_000,
                       integrator: str = "euler", init_scale: float = 0.3, seed: int = 0, samples: int = 400,
                       sgd_batch: int | None = None) -> SimulationResult:
    """Integrate Lemma 1's full-matrix flow (Eqs. 2-4) of (W, W_p, W_a), n1 = n2 = ``dim``, X = I, X' = sigma² I.

    Starts from a random W, W_p of entries N(0, (``init_scale``)² / dim) (``seed``), W_a = 0 under EMA (W_a = W
    without). ``lr``, ``steps``, ``integrator``, ``samples`` as in :func:`integrate_modes` (``rk45`` or ``dop853``
    keep Theorem 1's residual below 1e-6; ``euler`` breaks it by O(lr)). ``sgd_batch``: instead of the flow, run
    finite-batch SGD on the linear network with this batch (``integrator`` must then be ``euler``).

    Returns a :class:`SimulationResult` whose ``series`` are the diagnostics at each of the T kept times: ``s`` and
    ``p_sym`` (T, dim), the eigenvalues of F and sym(W_p), descending; ``p_rayleigh`` and ``alignment`` (T, dim),
    u_jᵀ W_p u_j and cos(u_j, W_p u_j) per eigenvector u_j of F; and (T,) scalars ``commutator`` (‖[F, W_p]‖_F),
    ``asymmetry``, ``lambda_min_K`` (Eq. 9), ``theorem1`` (its residual), ``corr_Wa_W``, ``tau``, ``norm_W``.
    """
    config = SimulationConfig(model="matrix" if sgd_batch is None else "sgd", params=params or ModeParams(), lr=lr,
                              steps=steps, integrator=integrator, dim=dim, init_scale=init_scale, seed=seed,
                              samples=samples, **({} if sgd_batch is None else {"batch": sgd_batch}))
    return run_simulation(config)


def integrate_unified(params: UnifiedParams | None = None, s0: Sequence[float] = UNIFIED_S0, *,
                      model: str = "modes", tau0: float = 0.0, lr: float = 0.01, steps: int = 10_000,
                      integrator: str = "euler", dim: int = 8, seed: int = 0, samples: int = 400) -> SimulationResult:
    """Integrate a unified gradient form of UniGrad in the linear model (:mod:`.unified`, no predictor).

    ``params``: the form and its constants (default :class:`UnifiedParams`: UniGrad, lambda 1, eta 0, EMA beta 0.4).
    ``model="modes"``: the mode flow (U3)-(U4) from ``s0`` (M,) initial eigenvalues of W Wᵀ, tau from ``tau0``
    under EMA; ``series["s"]`` and ``["tau"]`` are (T, M). ``model="matrix"`` ((U1)/(U2) with X = I, W of size
    ``dim``) or ``"sgd"``: ``series["s"]`` (T, dim) the eigenvalues of W Wᵀ, descending, with ``corr_Wa_W`` and
    ``norm_W`` (T,). Time as in :func:`integrate_modes` (t = step * lr). ``summary`` has the final values, the
    whitened fixed point s* = (1 - eta) / (lambda kappa) and each mode's outcome.
    """
    run = UnifiedRun(model, params or UnifiedParams(), lr=lr, steps=steps, integrator=integrator,
                     s0=tuple(float(v) for v in s0), tau0=tau0, dim=dim, seed=seed, samples=samples)
    return simulate_unified(run)
