"""Fixed points of the decoupled modes, their stability, the collapse threshold and the invariant parabola.

On the invariant parabola s = p^2 / alpha_p the predictor eigenvalue follows (Eq. 16)

    p' = p^2 [tau - (1 + sigma^2) p] - eta p = -(1 + sigma^2) p (p - p*_-)(p - p*_+),
    p*_(+-) = [tau +- sqrt(tau^2 - 4 eta (1 + sigma^2))] / (2 (1 + sigma^2)),

which exist when eta <= tau^2 / (4 (1 + sigma^2)); above that threshold only collapse (p = 0) remains.
In the (p, s) plane at fixed tau:
- eta > 0: isolated fixed points, the origin and (p*_+-, s* = (eta_p / eta) p*^2 / alpha_p), which lies on the
  parabola when eta_p = eta;
- eta = eta_p = 0: two lines of fixed points, the collapsed line s = 0 and the line p = tau / (1 + sigma^2).
Stability comes from the eigenvalues of the Jacobian (central differences of the exact vector field).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .checks import ConfigError
from .modes import mode_rates
from .params import ModeParams

Array = np.ndarray
TOL = 1e-9


@dataclass
class FixedPoint:
    """An isolated fixed point of the mode dynamics, with the Jacobian's eigenvalues and its kind."""

    p: float
    s: float
    tau: float
    kind: str
    eigenvalues: list[complex] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eigenvalues"] = [[float(np.real(e)), float(np.imag(e))] for e in self.eigenvalues]
        return d


@dataclass
class FixedLine:
    """A segment of a line of fixed points (eta = 0): ``p`` and ``s`` are (start, end) of the segment.

    ``kind`` is the stability transverse to the line: ``stable`` (attracting) or ``unstable`` (repelling).
    """

    name: str
    p: tuple[float, float]
    s: tuple[float, float]
    tau: float
    kind: str

    def to_dict(self) -> dict:
        return asdict(self)


def collapse_threshold(tau: float, sigma2: float) -> float:
    """Weight decay above which every mode collapses: eta > tau^2 / (4 (1 + sigma^2)) (Obs. #5)."""
    return tau * tau / (4.0 * (1.0 + sigma2))


def parabola_fixed_points(eta: float, tau: float, sigma2: float) -> tuple[float, float]:
    """(p*_-, p*_+) of Eq. 16; both NaN above the collapse threshold.

    At eta = 0, p*_- = 0 and p*_+ = tau / (1 + sigma^2).
    """
    k = 1.0 + sigma2
    disc = tau * tau - 4.0 * eta * k
    if disc < 0:
        return math.nan, math.nan
    r = math.sqrt(disc)
    return (tau - r) / (2.0 * k), (tau + r) / (2.0 * k)


def parabola_flow(p: Array, eta: float, tau: float, sigma2: float) -> Array:
    """p' on the invariant parabola (Eq. 16): p^2 [tau - (1 + sigma^2) p] - eta p. Same shape as ``p``."""
    p = np.asarray(p, float)
    return p * p * (tau - (1.0 + sigma2) * p) - eta * p


def invariant_parabola(p: Array, alpha_p: float) -> Array:
    """s = p^2 / alpha_p (Eq. 14 with c_j = 0)."""
    return np.asarray(p, float) ** 2 / alpha_p


def parabola_offset_decay(c0: float | Array, eta: float, t: Array) -> Array:
    """c_j e^{-2 eta t}: the predicted distance s - p^2/alpha_p above the parabola at time t (Eq. 14)."""
    return np.asarray(c0) * np.exp(-2.0 * eta * np.asarray(t, float))


def classify(eigenvalues: Array, tol: float = TOL) -> str:
    """``stable`` (all Re < 0), ``unstable`` (all Re > 0), ``saddle`` (both signs) or ``non-hyperbolic``."""
    re = np.real(np.asarray(eigenvalues))
    if np.any(np.abs(re) <= tol):
        return "non-hyperbolic"
    if np.all(re < 0):
        return "stable"
    if np.all(re > 0):
        return "unstable"
    return "saddle"


def classify_1d(derivative: float, tol: float = TOL) -> str:
    """Stability of a fixed point of a scalar flow from d(p')/dp: stable, unstable, or semi-stable when 0."""
    if derivative < -tol:
        return "stable"
    if derivative > tol:
        return "unstable"
    return "semi-stable"


def mode_jacobian(p: float, s: float, tau: float, params: ModeParams, *, with_tau: bool | None = None) -> Array:
    """Jacobian of (p', s'[, tau']) at one state by central differences; (2, 2) at fixed tau, else (3, 3)."""
    with_tau = params.tau_dynamic if with_tau is None else with_tau
    x0 = np.array([p, s, tau], float)
    n = 3 if with_tau else 2
    J = np.empty((n, n))
    for j in range(n):
        h = 1e-6 * max(1.0, abs(x0[j]))
        xp, xm = x0.copy(), x0.copy()
        xp[j] += h
        xm[j] -= h
        fp = np.array(mode_rates(*xp, params))[:n]
        fm = np.array(mode_rates(*xm, params))[:n]
        J[:, j] = (fp - fm) / (2 * h)
    return J


def _check_supported(params: ModeParams) -> None:
    if params.predictor not in ("linear", "symmetric") or not params.stop_grad:
        raise ConfigError(f"fixed points are derived for a trained predictor with stop-gradient; got --predictor "
                          f"{params.predictor!r}{'' if params.stop_grad else ' with --no-stop-grad'}: expected "
                          "linear or symmetric with --stop-grad")


def fixed_points(params: ModeParams, tau: float | None = None) -> list[FixedPoint | FixedLine]:
    """All fixed points of the mode dynamics, each with its stability.

    ``tau``: hold tau at this value (the (p, s) plane of Fig. 3). ``None`` uses ``params.tau_fixed``, or 1
    without EMA, or, with EMA, the 3-D system (p, s, tau) whose non-collapsed fixed points have tau = 1 and whose
    collapsed one has tau = beta / (beta - eta) (an artefact of Assumption 1).
    """
    _check_supported(params)
    three_d = tau is None and params.tau_dynamic
    if tau is None:
        tau = params.tau_fixed if params.tau_fixed is not None else 1.0
    fixed = params.replace(tau_fixed=None if three_d else tau)
    k = 1.0 + params.sigma2
    eta, eta_p = params.eta, params.eta_pred
    if eta == 0 and eta_p == 0 and not three_d:
        return _fixed_lines(tau, k)

    out: list[FixedPoint | FixedLine] = []
    # Collapsed point: p = s = 0 (tau = beta / (beta - eta) in the 3-D system, when that is finite and positive).
    tau_c = tau
    if three_d:
        tau_c = params.beta / (params.beta - eta) if params.beta > eta else math.inf
    if math.isfinite(tau_c):
        out.append(_point(0.0, 0.0, tau_c, fixed, three_d))
    if eta > 0:
        for p in sorted(set(parabola_fixed_points(eta, tau, params.sigma2))):
            if math.isfinite(p) and p != 0.0:
                s = (eta_p / eta) * p * p / params.alpha_p if params.alpha_p > 0 else math.inf
                if math.isfinite(s):
                    out.append(_point(p, s, tau, fixed, three_d))
    elif three_d:
        # eta = 0 with EMA: the non-collapsed fixed points form the line p = 1/(1+sigma^2), tau = 1, any s > 0.
        out.append(FixedLine("p = tau/(1+sigma^2), tau = 1", (1.0 / k, 1.0 / k), (0.0, math.inf), 1.0, "stable"))
    return out


def _point(p: float, s: float, tau: float, params: ModeParams, three_d: bool) -> FixedPoint:
    ev = np.linalg.eigvals(mode_jacobian(p, s, tau, params, with_tau=three_d))
    return FixedPoint(p, s, tau, classify(ev), [complex(e) for e in ev])


def _fixed_lines(tau: float, k: float) -> list[FixedPoint | FixedLine]:
    """eta = 0 at fixed tau: the collapsed line s = 0 and the line p = tau/k, split by transverse stability.

    Transverse eigenvalues: 2 p (tau - k p) on s = 0 (repelling for p between 0 and tau/k) and
    -alpha_p k s on p = tau/k (attracting for s > 0).
    """
    pc = tau / k
    lo, hi = min(0.0, pc), max(0.0, pc)
    return [
        FixedLine("s = 0", (-math.inf, lo), (0.0, 0.0), tau, "stable"),
        FixedLine("s = 0", (lo, hi), (0.0, 0.0), tau, "unstable"),
        FixedLine("s = 0", (hi, math.inf), (0.0, 0.0), tau, "stable"),
        FixedLine("p = tau/(1+sigma^2)", (pc, pc), (0.0, math.inf), tau, "stable"),
    ]


def parabola_points(eta: float, tau: float, sigma2: float) -> list[dict]:
    """Fixed points of the 1-D flow on the parabola (Eq. 16, Fig. 4), each {p, kind, slope}."""
    k = 1.0 + sigma2
    roots = [0.0] + [p for p in parabola_fixed_points(eta, tau, sigma2) if math.isfinite(p) and p != 0.0]
    out = []
    for p in sorted(set(roots)):
        slope = 2 * p * tau - 3 * k * p * p - eta
        out.append({"p": p, "kind": classify_1d(slope), "slope": slope})
    return out
