"""The errors and checks every part of ssltheory shares: the base layer (numbers and text in, one line out).

:class:`ConfigError` is bad input: its message is one line naming the value and what is accepted, and the command
line prints it and exits with status 2. :class:`RunError` is a run that failed on valid input (a solver gave up, a
loss diverged): one line, exit status 1. The ``check_*`` functions turn a user's value into a checked number, count
or choice, or raise :class:`ConfigError`.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any


class ConfigError(ValueError):
    """A setting is out of range; the message is one line naming the value and what is accepted."""


class RunError(RuntimeError):
    """A run failed on valid input (a solver gave up, a loss diverged); the message is one line."""


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, note: str | None = None) -> float:
    """Return ``value`` as a finite float, or raise :class:`ConfigError` if it is not in the interval.

    ``name`` is how the user spells the setting (``--alpha-p``); bounds are inclusive unless ``*_open``. ``note``
    (why the bounds are what they are) ends the message of an out-of-range value, in brackets.
    """
    lo_br = "(" if low_open or low is None else "["
    hi_br = ")" if high_open or high is None else "]"
    interval = f"{lo_br}{'-inf' if low is None else _fmt(low)}, {'inf' if high is None else _fmt(high)}{hi_br}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r} is not a number: expected a number in {interval}") from None
    bad = (not math.isfinite(x)
           or (low is not None and (x < low or (low_open and x == low)))
           or (high is not None and (x > high or (high_open and x == high))))
    if bad:
        raise ConfigError(f"{name} {_fmt(x)} is out of range: expected a number in {interval}"
                          + (f" ({note})" if note else ""))
    return x


MAX_FLOAT_NOTATION = 2 ** 53
"""Largest whole number accepted in float notation (``1e5``, ``2.5e3``): up to here every integer is a float64, so
the text means exactly one number; larger counts are written in digits."""


class _BeyondFloatNotation(ValueError):
    """A whole number in float notation beyond :data:`MAX_FLOAT_NOTATION`."""


def _whole_number(value: Any) -> int:
    """``value`` as an int: an int, a whole float, or text of digits or of a whole number in float notation (``1e5``,
    ``2.5e3``, ``100000.0``, at most :data:`MAX_FLOAT_NOTATION`), as ``--help`` writes the paper's values; anything
    else (``1.5``, ``nan``, ``abc``, ``True``) raises ValueError, a larger number in float notation
    :class:`_BeyondFloatNotation`."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            d = Decimal(value.strip())  # exact: no rounding of 2.5e3 or of 0.1e1 (InvalidOperation is a ValueError)
            if not d.is_finite() or d != d.to_integral_value():
                raise ValueError(value) from None
            if d.adjusted() > 16 or abs(d) > MAX_FLOAT_NOTATION:
                raise _BeyondFloatNotation(value) from None
            return int(d)
    x = int(value)
    if not isinstance(value, int) and x != float(value):
        raise ValueError(value)
    return x


def _shown(value: Any) -> str:
    """``repr(value)``, cut to 40 characters (a pasted file does not make a line of thousands)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_int(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    """Return ``value`` as an int in [``low``, ``high``] (no upper bound when ``high`` is None) or raise
    :class:`ConfigError`. Text in float notation is read when it is a whole number (``1e5``, see
    :func:`_whole_number`); ``1.5`` is refused."""
    expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    try:
        x = _whole_number(value)
    except _BeyondFloatNotation:
        note = (" (float notation such as 1e5 is read up to 2^53; write a larger number in digits)"
                if any(c in str(value) for c in ".eE") else "")
        raise ConfigError(f"{name} {_shown(value)} is out of range: expected {expected}{note}") from None
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        raise ConfigError(f"{name} {_shown(value)} is not a whole number: expected {expected}") from None
    if x < low or (high is not None and x > high):
        raise ConfigError(f"{name} {x} is out of range: expected {expected}")
    return x


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is not known: expected one of {', '.join(choices)}")
    return value


def parse_floats(name: str, text: str | float | list[float], **bounds: Any) -> list[float]:
    """Parse a comma-separated list such as ``"0,0.01,1"`` into checked floats (see :func:`check_number`)."""
    if isinstance(text, (int, float)):
        items: list[Any] = [text]
    elif isinstance(text, str):
        items = [t.strip() for t in text.split(",")]
        if any(t == "" for t in items):
            raise ConfigError(f"{name} {text!r} has an empty item: expected comma-separated numbers")
    else:
        items = list(text)
    return [check_number(name, t, **bounds) for t in items]


def _fmt(x: float) -> str:
    return f"{x:g}"
