"""One front door for integrating a vector field: scipy's ``solve_ivp`` or fixed-step Euler.

The state may be an array of any shape (for example (3, n_modes, n_inits) for the decoupled modes, or a
flat vector for the full-matrix model); ``solve_ivp`` sees it flattened, so thousands of initial
conditions integrate as one system. Euler with step ``dt`` is the discrete process itself: step k is time
t = k * dt, the paper's learning rate alpha.

Progress is reported through an optional callback ``on_progress(fraction)`` so that this module does no I/O;
the command line hands in a rich progress bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from .params import RunError

Array = np.ndarray
Field = Callable[[float, Array], Array]
Progress = Callable[[float], None]


class IntegrationError(RunError):
    """The solver failed (for example a state that blew up to infinity)."""


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
    ts = np.empty(len(record))
    ys = np.empty((len(record), *y.shape))
    nxt = 0
    report_every = max(1, steps // 200)
    for k in range(steps + 1):
        if k == record[nxt]:
            ts[nxt] = k * dt
            ys[nxt] = y
            nxt += 1
            if nxt == len(record):
                break
        y = y + dt * field(k * dt, y)
        if post_step is not None:
            y = post_step(y)
        if on_progress is not None and (k + 1) % report_every == 0:
            on_progress((k + 1) / steps)
    if on_progress is not None:
        on_progress(1.0)
    return Trajectory(ts, ys)


def ode(field: Field, y0: Array, t_end: float, *, method: str = "RK45", samples: int = 200,
        rtol: float = 1e-9, atol: float = 1e-12, on_progress: Progress | None = None) -> Trajectory:
    """Integrate y' = field(t, y) from 0 to ``t_end`` with ``scipy.integrate.solve_ivp``.

    The state keeps its shape for ``field``; ``solve_ivp`` sees it flattened. Note that solve_ivp's error
    norm is the RMS over all components, so a batch of many initial conditions needs tight tolerances to
    keep each trajectory accurate; the defaults keep them within about 1e-8 of each other.
    """
    y0 = np.asarray(y0, dtype=float)
    shape = y0.shape
    t_eval = sample_times(t_end, samples)
    last = [0.0]

    def flat(t: float, yf: Array) -> Array:
        if on_progress is not None and t_end > 0 and t - last[0] > 0.005 * t_end:
            last[0] = t
            on_progress(min(t / t_end, 1.0))
        return np.asarray(field(t, yf.reshape(shape)), dtype=float).ravel()

    sol = solve_ivp(flat, (0.0, float(t_end)), y0.ravel(), method=method, t_eval=t_eval,
                    rtol=rtol, atol=atol)
    if not sol.success:
        raise IntegrationError(f"{method} failed at t = {sol.t[-1] if sol.t.size else 0:g}: {sol.message}")
    if on_progress is not None:
        on_progress(1.0)
    return Trajectory(sol.t, sol.y.T.reshape(len(sol.t), *shape))


def integrate(field: Field, y0: Array, *, dt: float, steps: int, method: str = "euler", samples: int = 200,
              on_progress: Progress | None = None, post_step: Callable[[Array], Array] | None = None,
              rtol: float = 1e-9, atol: float = 1e-12) -> Trajectory:
    """Integrate over t in [0, steps * dt] with Euler of step ``dt`` or a ``solve_ivp`` method.

    ``method``: ``"euler"`` or a solve_ivp name in any case (``"rk45"``, ``"dop853"``, ``"lsoda"``).
    ``post_step`` only applies to Euler.
    """
    if method.lower() == "euler":
        return euler(field, y0, dt, steps, samples=samples, on_progress=on_progress, post_step=post_step)
    name = {"rk45": "RK45", "dop853": "DOP853", "lsoda": "LSODA", "radau": "Radau", "bdf": "BDF"}.get(
        method.lower(), method)
    return ode(field, y0, steps * dt, method=name, samples=samples, rtol=rtol, atol=atol,
               on_progress=on_progress)
