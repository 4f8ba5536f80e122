"""Shared helpers for the tests."""

from __future__ import annotations

import io
import math
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

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


def assert_same(new, old, where: str = "runs", rel: float = 1e-9, abs_: float = 0.0) -> None:
    """Equal structure; numbers equal to ``rel`` relative or ``abs_`` absolute (none by default); strings, bools and
    None equal."""
    if isinstance(old, dict):
        assert isinstance(new, dict) and sorted(new) == sorted(old), f"{where}: keys {sorted(new)} != {sorted(old)}"
        for k in old:
            assert_same(new[k], old[k], f"{where}.{k}", rel, abs_)
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), f"{where}: length differs"
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_same(a, b, f"{where}[{i}]", rel, abs_)
    elif isinstance(old, bool) or old is None or isinstance(old, str):
        assert new == old and type(new) is type(old), f"{where}: {new!r} != {old!r}"
    else:
        assert isinstance(new, (int, float)) and not isinstance(new, bool), f"{where}: {new!r} is not a number"
        assert math.isclose(new, old, rel_tol=rel, abs_tol=abs_), f"{where}: {new!r} != recorded {old!r}"


@dataclass
class Result:
    """What a command run by :func:`cli` did: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str) -> Result:
    """Run ``ssltheory ARGS`` in this process through the console script's entry point (the same parsing, the same
    one-line errors and exit statuses), capturing stdout and stderr. An exception the entry point does not turn into
    a one-line error propagates, so a test that expects none fails on it."""
    from ssltheory.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())
