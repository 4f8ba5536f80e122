"""How much memory a simulation needs, estimated from its settings before anything is allocated.

The full-matrix, SGD and reduced models keep n x n matrices (n = ``dim``) per time sample, and the SGD model
draws n x batch views per step, so a large ``--dim`` (or ``--batch``, or ``--samples``) asks for more memory than a
machine has: ``--model matrix --dim 100000`` starts by allocating X = I of 74.5 GiB. :func:`check_memory` refuses
such a run with a one-line :class:`~ssltheory.theory.checks.ConfigError` that names the setting and the largest
value accepted, against :func:`memory_limit`: half of the machine's memory (or of the container's limit), leaving
the other half to the rest of the process (Python, matplotlib) and to other programs.

The estimate counts float64 arrays (8 bytes) that are alive at the same time, rounded up:

- the sampled trajectory (T samples of the state), three times for ``solve_ivp`` (its list of samples, the stacked
  array and our reshaped copy);
- the integrator's working arrays: about 20 n x n matrices per Euler step of Lemma 1's field; Runge-Kutta stages
  (RK45: 7 + 5 states, DOP853: 16 + 6); LSODA's Nordsieck history (13 states) plus its dense Jacobian and LU factor
  (2 x state^2, allocated up front by scipy);
- the diagnostics: the predictor per sample (T n^2) and the spectra, alignments (about 8 T n);
- the JSON of those spectra: about 60 bytes per number as Python floats and text (counted as 8 floats);
- SGD's batch: the views x0, x1, x2, their noise and products (about 12 n B), DirectPred's concatenation included.

Time: :func:`check_time` refuses a sweep whose fixed-step runs (Euler, SGD) would compute for more than
:data:`TIME_LIMIT`, naming the largest ``--steps`` accepted. Each step costs a Python loop iteration and the field's
arithmetic (:func:`estimate_seconds`: about 8 n³ operations per step of Lemma 1's field and of the reduced flow,
SGD's draws and products of its n x B views, and 50-60 n³ per kept sample for the diagnostics' eigenproblems),
counted at about twice the speed one core of the 2-core developer box measured (19 µs a step of the default modes;
--model matrix --dim 64: 0.16 ms a step and 2.8 ms a kept sample; --dim 256: 6.8 ms and 56 ms; --model sgd --dim 64
--batch 1024: 5 ms a step), so the estimate is about half the time there: a run it refuses would take over an hour
on a machine twice as fast, and the cap never stops a run that would end within the hour there.
``solve_ivp`` runs are not capped here: their work is bounded by the evaluations budget of
:data:`~ssltheory.theory.integrate.MAX_EVALUATIONS`, not by ``--steps``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .checks import ConfigError
from .params import MAX_STEPS, SimulationConfig

FLOAT = 8
FRACTION = 0.5
"""Share of the machine's memory a simulation may plan to use."""

_STAGES = {"rk45": 12, "dop853": 22, "lsoda": 13}


def machine_memory() -> int:
    """Bytes of memory this process can use: the physical memory, or the container's (cgroup) limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def memory_limit() -> int:
    """The most memory a simulation may plan to use: :data:`FRACTION` of :func:`machine_memory`."""
    return int(FRACTION * machine_memory())


def _kept_samples(config: SimulationConfig, samples: int | None = None) -> int:
    samples = config.samples if samples is None else samples
    if config.integrator == "euler" or config.model == "sgd":
        return min(samples, config.steps + 1)  # Euler and SGD keep at most one sample per step
    return samples


def estimate_memory(config: SimulationConfig, *, dim: int | None = None, batch: int | None = None,
                    samples: int | None = None) -> int:
    """Bytes the run of ``config`` needs at its peak (see the module's docstring); ``dim``, ``batch`` and
    ``samples`` override the config's (to find the largest accepted)."""
    n = config.dim if dim is None else dim
    B = config.batch if batch is None else batch
    T = _kept_samples(config, samples)
    ivp = config.integrator != "euler" and config.model != "sgd"
    if config.model == "modes":
        state, work, diag = 3 * len(config.p0), 10 * 3 * len(config.p0), 12 * T * len(config.p0)
    elif config.model == "reduced":
        state, work, diag = 2 * n * n, 12 * n * n, T * (3 * n + 8 * 3 * n)
    else:
        state, work = 3 * n * n, 20 * n * n
        diag = T * n * n + T * (8 * n + 8 * 4 * n)
    floats = T * state * (3 if ivp else 1) + diag
    if ivp:
        work = max(work, _STAGES[config.integrator] * state)
        if config.integrator == "lsoda":
            work += 2 * state * state
    if config.model == "sgd":
        work += 12 * n * B
    return (floats + work) * FLOAT  # Python ints: no overflow for any --dim


def gib(n_bytes: float) -> str:
    """``12.3 GiB`` (or MiB below 1 GiB)."""
    if n_bytes >= 2 ** 1000:
        return "more than 1e290 GiB"
    return f"{n_bytes / 2 ** 30:.3g} GiB" if n_bytes >= 2 ** 30 else f"{n_bytes / 2 ** 20:.3g} MiB"


def _n(k: int) -> str:
    """An integer as typed, or ``~1e40`` when it has more than 15 digits."""
    text = str(k)
    return text if len(text) <= 15 else f"~1e{len(text) - 1}"


def _largest(fits, high: int) -> int:
    """The largest k in [1, high] with fits(k) (fits is monotone), or 0 when even 1 does not fit."""
    if not fits(1):
        return 0
    lo, hi = 1, high
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def check_memory(config: SimulationConfig, limit: int | None = None) -> int:
    """Raise :class:`ConfigError` when the run of ``config`` would need more than ``limit`` bytes (default
    :func:`memory_limit`), naming ``--dim`` (else ``--batch``, else ``--samples``) and the largest value accepted.
    Returns the estimate in bytes."""
    note = ""
    if limit is None:
        limit = memory_limit()
        note = f" ({FRACTION:.0%} of this machine's {gib(machine_memory())})"
    need = estimate_memory(config)
    if need <= limit:
        return need
    how = f"--batch {_n(config.batch)}" if config.model == "sgd" else config.integrator
    where = f"--model {config.model} ({how}, {_n(_kept_samples(config))} samples)"
    head = f"needs about {gib(need)} of memory for {where}, more than the limit of {gib(limit)}"
    tail = head + note
    if config.model != "modes":
        d = _largest(lambda k: estimate_memory(config, dim=k) <= limit, config.dim)
        if d > 0:
            raise ConfigError(f"--dim {_n(config.dim)} {tail}: expected --dim <= {d}")
    if config.model == "sgd":
        b = _largest(lambda k: estimate_memory(config, batch=k) <= limit, config.batch)
        if b > 0:
            raise ConfigError(f"--batch {_n(config.batch)} {tail}: expected --batch <= {b}")
    s = _largest(lambda k: estimate_memory(config, samples=k) <= limit, config.samples)
    if s >= 2:
        raise ConfigError(f"--samples {_n(config.samples)} {tail}: expected --samples <= {s}")
    raise ConfigError(f"--dim {_n(config.dim)} {tail}: expected smaller --dim, --batch and --samples")


TIME_LIMIT = 3600.0
"""Seconds of estimated computing a ``simulate`` sweep may plan (one hour; the paper's Fig. 5 takes about 3 s)."""
STEP_OVERHEAD = 8e-6
"""Seconds a fixed step costs besides its arithmetic: the Python loop and the field's call (17-19 µs measured)."""
FLOPS = 4e10
"""Operations per second assumed for the field's arithmetic (about twice the 2e10 one core measured)."""
MODE_COST = 200
"""Operations per mode per step of the decoupled modes (9 ns a mode measured at 1000 modes)."""
DRAW_COST = 350
"""Operations per Gaussian number SGD draws for its views (17 ns measured, counted in operations)."""


def _fixed_step(config: SimulationConfig) -> bool:
    """Whether the run takes ``--steps`` fixed steps (Euler, SGD), whose count sets its time."""
    return config.integrator == "euler" or config.model == "sgd"


def estimate_seconds(config: SimulationConfig, *, steps: int | None = None, dim: int | None = None,
                     samples: int | None = None, batch: int | None = None) -> float:
    """Seconds the run of ``config`` computes at least, by the rates of the module's docstring: its fixed steps
    (none for a solve_ivp run, whose work the evaluations budget bounds) and the diagnostics of its kept samples.
    ``steps``, ``dim``, ``samples`` and ``batch`` override the config's (to find the largest accepted)."""
    k = config.steps if steps is None else steps
    B = config.batch if batch is None else batch
    n = config.dim if dim is None else dim
    samples = config.samples if samples is None else samples
    fixed = _fixed_step(config)
    T = min(samples, k + 1) if fixed else samples
    if config.model == "modes":
        per_step, per_sample = MODE_COST * len(config.p0), 0.0
    elif config.model == "reduced":
        per_step, per_sample = 8.0 * n ** 3, 50.0 * n ** 3
    else:  # matrix, sgd: Lemma 1's products; SGD adds its batch's products and draws
        per_step, per_sample = 8.0 * n ** 3, 60.0 * n ** 3
        if config.model == "sgd":
            per_step += 8.0 * n * n * B + DRAW_COST * 3 * n * B
    stepping = k * (STEP_OVERHEAD + per_step / FLOPS) if fixed else 0.0
    return stepping + T * per_sample / FLOPS


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1 h``, ``5.2 h``, ``116 days``, ``3.2e+06 years``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.2g} h"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:.0f} days"
    return f"{seconds / (365.25 * 86400):.3g} years"


def check_time(configs: Sequence[SimulationConfig], limit: float = TIME_LIMIT) -> float:
    """Raise :class:`ConfigError` when the sweep ``configs`` (one model, one ``--steps``) would compute for more than
    ``limit`` seconds by :func:`estimate_seconds`, naming ``--steps`` (``--samples`` for a solve_ivp run) and the
    largest value accepted, and the largest ``--dim``, ``--batch`` or ``--samples`` that would do instead. Returns the
    estimate in seconds."""

    def total(**override: int) -> float:
        return sum(estimate_seconds(x, **override) for x in configs)

    need = total()
    if need <= limit:
        return need
    c = configs[0]
    fixed = _fixed_step(c)
    how = "sgd" if c.model == "sgd" else c.integrator
    what = f"{len(c.p0)} modes" if c.model == "modes" else f"--dim {_n(c.dim)}" + (
        f", --batch {_n(c.batch)}" if c.model == "sgd" else "")
    runs = f"{len(configs)} runs of the --eta × --beta sweep" if len(configs) > 1 else "1 run"
    lead = f"--steps {_n(c.steps)}" if fixed else f"--samples {_n(c.samples)}"
    head = (f"{lead} needs about {duration(need)} of computing for --model {c.model} ({how}, {what}, {runs}; an "
            f"estimate, at least this long), more than the limit of {duration(limit)}")
    options = []
    if fixed and (s := _largest(lambda k: total(steps=k) <= limit, min(c.steps, MAX_STEPS))) > 0:
        options.append(f"--steps <= {s}")
    if c.model != "modes" and (d := _largest(lambda k: total(dim=k) <= limit, c.dim)) > 0:
        options.append(f"--dim <= {d}")
    if c.model == "sgd" and (b := _largest(lambda k: total(batch=k) <= limit, c.batch)) > 0:
        options.append(f"--batch <= {b}")
    if c.model != "modes" and (t := _largest(lambda k: total(samples=k) <= limit, c.samples)) >= 2:
        options.append(f"--samples <= {t}")
    if len(configs) > 1:
        options.append("fewer --eta × --beta runs")
    raise ConfigError(f"{head}: expected {' or '.join(options) or 'a smaller --dim, --batch or sweep'}")
