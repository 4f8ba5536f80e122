"""How much memory a simulation needs, estimated from its settings before anything is allocated.

The full-matrix, SGD and reduced models keep n x n matrices (n = ``dim``) per time sample, and the SGD model
draws n x batch views per step, so a large ``--dim`` (or ``--batch``, or ``--samples``) asks for more memory than a
machine has: ``--model matrix --dim 100000`` starts by allocating X = I of 74.5 GiB. :func:`check_memory` refuses
such a run with a one-line :class:`~ssltheory.theory.params.ConfigError` that names the setting and the largest
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
"""

from __future__ import annotations

import os
from pathlib import Path

from .params import ConfigError, SimulationConfig

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
