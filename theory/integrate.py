"""One front door for integrating a vector field: scipy's ``solve_ivp`` or fixed-step Euler.

The state may be an array of any shape (for example (3, n_modes, n_inits) for the decoupled modes, or a
flat vector for the full-matrix model); ``solve_ivp`` sees it flattened, so thousands of initial
conditions integrate as one system. Euler with step ``dt`` is the discrete process itself: step k is time
t = k * dt, the paper's learning rate alpha.

Progress is reported through an optional callback ``on_progress(fraction)`` so that this module does no I/O;
the command line hands in a rich progress bar.

Non-finite states: Euler carries on while any component of the state is finite (independent modes that did not
blow up stay meaningful) and stops once none is, leaving NaN in the samples after that; the caller decides what a
diverged trajectory means (:mod:`ssltheory.theory.simulate` marks it "diverged"). Overflow warnings are silenced
here, since the result says what happened. ``solve_ivp`` cannot step through a non-finite state: it gives up, or
returns one, and either becomes an :class:`IntegrationError` (a one-line error, exit status 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from .checks import RunError

Array = np.ndarray
Field = Callable[[float, Array], Array]
Progress = Callable[[float], None]
BLOWUP = 1e30
"""``solve_ivp`` stops when a component of the state passes this: the flow then blows up in finite time, and an
adaptive solver would otherwise shrink its step towards the singularity for ever."""
MAX_EVALUATIONS = 1_000_000
"""``solve_ivp`` gives up after this many evaluations of the vector field. The default runs take about 5 x 10^3
(LSODA at --dim 16: 1.4 x 10^4); an explicit method on a stiff flow (a start of scale 1e6 makes rates of 1e12)
would need ~10^12 and hang for days."""
CHECK_EVERY = 1000
"""Euler looks for a state with nothing finite left every this many steps (and at every sample)."""


class IntegrationError(RunError):
    """The solver failed (for example a state that blew up to infinity). Where it stopped at the :data:`BLOWUP`
    guard, ``t`` and ``state`` hold the time and the state (of the caller's shape) there; else they are None."""

    def __init__(self, message: str, t: float | None = None, state: Array | None = None) -> None:
        super().__init__(message)
        self.t, self.state = t, state


@dataclass
class Trajectory:
    """Sampled solution: ``t`` of shape (T,), ``y`` of shape (T, *state_shape)."""

    t: Array
    y: Array

    @property
    def final(self) -> Array:
        """State at the last sample, shape ``state_shape``."""
        return self.y[-1]


def sample_times(t_end: float, samples: int) -> Array:
    """``samples`` evenly spaced times from 0 to ``t_end`` inclusive."""
    return np.linspace(0.0, float(t_end), int(samples))


def record_steps(steps: int, samples: int) -> Array:
    """The step indices at which a run of ``steps`` steps keeps a sample: evenly spaced, first and last included."""
    return np.unique(np.linspace(0, steps, min(int(samples), steps + 1)).round().astype(int))


def euler(field: Field, y0: Array, dt: float, steps: int, *, samples: int = 200,
          on_progress: Progress | None = None,
          post_step: Callable[[Array], Array] | None = None) -> Trajectory:
    """Fixed-step Euler y_{k+1} = y_k + dt * field(t_k, y_k) for ``steps`` steps.

    Records ``samples`` states at evenly spaced steps (the first and the last included). ``post_step`` maps
    the state after each step (used, for example, to re-symmetrise W_p). Returns a :class:`Trajectory`.
    """
    y = np.array(y0, dtype=float, copy=True)
    record = record_steps(steps, samples)
    ts = record * float(dt)
    ys = np.full((len(record), *y.shape), np.nan)
    nxt = 0
    report_every = max(1, steps // 200)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for k in range(steps + 1):
            if k == record[nxt]:
                ys[nxt] = y
                nxt += 1
                if nxt == len(record):
                    break
                if not np.isfinite(y).any():
                    break  # nothing finite left: the rest of the samples stay NaN
            elif k % CHECK_EVERY == 0 and not np.isfinite(y).any():
                break
            y = y + dt * field(k * dt, y)
            if post_step is not None:
                y = post_step(y)
            if on_progress is not None and (k + 1) % report_every == 0:
                on_progress((k + 1) / steps)
    if on_progress is not None:
        on_progress(1.0)
    return Trajectory(ts, ys)


class _OverBudget(Exception):
    def __init__(self, t: float):
        self.t = t


def ode(field: Field, y0: Array, t_end: float, *, method: str = "RK45", samples: int = 200,
        rtol: float = 1e-9, atol: float = 1e-12, on_progress: Progress | None = None,
        max_evaluations: int = MAX_EVALUATIONS) -> Trajectory:
    """Integrate y' = field(t, y) from 0 to ``t_end`` with ``scipy.integrate.solve_ivp``.

    The state keeps its shape for ``field``; ``solve_ivp`` sees it flattened. Note that solve_ivp's error
    norm is the RMS over all components, so a batch of many initial conditions needs tight tolerances to
    keep each trajectory accurate; the defaults keep them within about 1e-8 of each other. More than
    ``max_evaluations`` calls of ``field``, or a state passing :data:`BLOWUP`, raise :class:`IntegrationError`.
    """
    y0 = np.asarray(y0, dtype=float)
    shape = y0.shape
    t_eval = sample_times(t_end, samples)
    last = [0.0]
    calls = [0]

    def flat(t: float, yf: Array) -> Array:
        calls[0] += 1
        if calls[0] > max_evaluations:
            raise _OverBudget(t)
        if on_progress is not None and t_end > 0 and t - last[0] > 0.005 * t_end:
            last[0] = t
            on_progress(min(t / t_end, 1.0))
        return np.asarray(field(t, yf.reshape(shape)), dtype=float).ravel()

    def blowup(t: float, yf: Array) -> float:
        return BLOWUP - float(np.max(np.abs(yf)))

    blowup.terminal = True  # a state heading to infinity in finite time: stop instead of shrinking the step forever

    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            sol = solve_ivp(flat, (0.0, float(t_end)), y0.ravel(), method=method, t_eval=t_eval,
                            rtol=rtol, atol=atol, events=blowup if np.max(np.abs(y0)) < BLOWUP else None)
    except _OverBudget as e:
        raise IntegrationError(f"{method} gave up at t = {e.t:.3g} of {t_end:g} after {max_evaluations} evaluations "
                               "of the flow (it is stiff at these settings, or the run is very long): expected "
                               "--integrator lsoda (stiff problems), euler, or a shorter --steps × --lr") from None
    if sol.status == 1:
        raise IntegrationError(f"{method} stopped at t = {sol.t_events[0][0]:g}: the state passed {BLOWUP:g} (it "
                               "blows up in finite time, or grows exponentially past any scale over this long a "
                               "time): expected settings whose trajectories stay finite",
                               float(sol.t_events[0][0]), sol.y_events[0][0].reshape(shape))
    if not sol.success:
        raise IntegrationError(f"{method} failed at t = {sol.t[-1] if sol.t.size else 0:g}: {sol.message}")
    bad = ~np.all(np.isfinite(sol.y), axis=0)
    if bad.any():
        raise IntegrationError(f"{method} returned a non-finite state at t = {sol.t[np.argmax(bad)]:g}: the flow "
                               "blew up (expected settings whose trajectories stay finite)")
    if on_progress is not None:
        on_progress(1.0)
    return Trajectory(sol.t, sol.y.T.reshape(len(sol.t), *shape))


def integrate(field: Field, y0: Array, *, dt: float, steps: int, method: str = "euler", samples: int = 200,
              on_progress: Progress | None = None, post_step: Callable[[Array], Array] | None = None,
              rtol: float = 1e-9, atol: float = 1e-12, max_evaluations: int = MAX_EVALUATIONS) -> Trajectory:
    """Integrate over t in [0, steps * dt] with Euler of step ``dt`` or a ``solve_ivp`` method.

    ``method``: ``"euler"`` or a solve_ivp name in any case (``"rk45"``, ``"dop853"``, ``"lsoda"``).
    ``post_step`` only applies to Euler.
    """
    if method.lower() == "euler":
        return euler(field, y0, dt, steps, samples=samples, on_progress=on_progress, post_step=post_step)
    name = {"rk45": "RK45", "dop853": "DOP853", "lsoda": "LSODA", "radau": "Radau", "bdf": "BDF"}.get(
        method.lower(), method)
    return ode(field, y0, steps * dt, method=name, samples=samples, rtol=rtol, atol=atol,
               on_progress=on_progress, max_evaluations=max_evaluations)
