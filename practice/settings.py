"""Settings: each component of a run declares its own, and the run's config assembles them.

A :class:`Setting` is one knob: its name (the config field, ``alpha_p``), default, help text, the ``--help`` panel it
shows in, the paper's value, and what it accepts (a type; bounds or choices, a registry's names for a registry).
The module that owns a knob declares it with :func:`declare` where the knob is used (a method's temperature beside
its objective, DirectPred's eps beside the predictor, a dataset's ``--sigma2`` beside the data), and its cross-field
rules with :func:`rule` (checked on every config once each setting is valid on its own). Two generic rules come with
a declaration and need no code:

- ``only``: the setting does something only where ``only(cfg)`` holds; a value other than its default elsewhere is a
  one-line error naming ``only_for`` (``--eps-inside is only for --predictor directpred``);
- ``resolve``: an ``auto`` (or None) default that the owner turns into the value a run uses; ``cfg.resolved_NAME``
  reads it (device-dependent ones, ``device=True``, take ``(device_type, world)``).

:class:`~.config.TrainConfig` holds one value per declared setting; the ``train`` command's flags and ``--help``
panels, the validation of a settings file and of the experiment recipes are all made from :func:`settings`, so a
new knob is one declaration in its owner's module.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssltheory.theory.checks import ConfigError, check_choice, check_int, check_number

SECTIONS = ("Data", "Model", "Method", "Optimisation", "Measurement", "Speed")
"""The ``--help`` panels, in order; a component's own settings may open a panel of their own ("Method: moco")."""


@dataclass(frozen=True)
class Setting:
    """One knob of a run. ``type``: ``int``, ``float``, ``bool``, ``str`` or ``float | None`` (None: resolved by
    ``resolve``); ``choices``: a tuple, or a callable returning a registry (its keys are the choices, as they are
    when asked: a method registered later is accepted); ``low`` / ``high`` (``_open``: excluded); ``flag``: the
    spelling if not ``--name-with-dashes``; ``aliases``: other spellings the command line accepts; ``panel``: the
    ``--help`` panel (default ``section``); ``only`` / ``only_for`` and ``resolve`` / ``device``: the module's
    docstring."""

    name: str
    default: Any
    help: str
    section: str
    type: Any
    paper: str | None = None
    choices: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    panel: str | None = None
    only: Callable[[Any], bool] | None = None
    only_for: str = ""
    resolve: Callable[..., Any] | None = None
    device: bool = False

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"setting {self.name}: section {self.section!r} is not one of {SECTIONS}")

    @property
    def spelling(self) -> str:
        """How the command line spells it (``--alpha-p``; ``DATASET`` for the argument)."""
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def help_panel(self) -> str:
        return self.panel or self.section

    def accepted(self) -> tuple[str, ...] | None:
        """The accepted values (a registry's names, as they are now), or None for a number, a flag or free text."""
        c = self.choices() if callable(self.choices) else self.choices
        return tuple(c) if c is not None else None

    def check(self, value: Any) -> Any:
        """``value`` checked against the type, choices and bounds (numbers coerced), or a one-line ConfigError."""
        if value is None and self.default is None:
            return None
        flag, choices = self.spelling, self.accepted()
        if choices is not None:
            return check_choice(flag, value, choices)
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{flag} {value!r} is not a boolean: expected true or false")
            return value
        if isinstance(value, bool):
            raise ConfigError(f"{flag} {value!r} is a boolean: expected a number")
        if isinstance(value, int) and abs(value) > 2**63:
            raise ConfigError(f"{flag} {value} is out of range: expected a number of at most 19 digits")
        if self.type is int:
            low = int(self.low or 0)
            x = check_int(flag, value, low=low)
            if self.high is not None and x > self.high:
                raise ConfigError(f"{flag} {x} is out of range: expected an integer from {low} to {int(self.high)}")
            return x
        if self.type is float or float in typing.get_args(self.type):
            return check_number(flag, value, low=self.low, high=self.high, low_open=self.low_open,
                                high_open=self.high_open)
        if not isinstance(value, str):
            raise ConfigError(f"{flag} {value!r} is not text: expected a string")
        return value


SETTINGS: dict[str, Setting] = {}
"""Every declared setting by name, in the order of declaration within each section (:func:`settings`)."""
RULES: list[Callable[[Any], None]] = []
"""The cross-field rules (:func:`rule`), in the order they were declared."""


def declare(*settings: Setting) -> tuple[Setting, ...]:
    """Add ``settings`` to :data:`SETTINGS` and return them. Declaring the same name twice is a programming error,
    unless it is the same declaration (a module imported again)."""
    for s in settings:
        old = SETTINGS.get(s.name)
        if old is not None and old != s:
            raise ValueError(f"setting {s.name} is declared twice")
        SETTINGS[s.name] = s
    return settings


def rule(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """Declare a cross-field rule: ``check(cfg)`` raises a one-line ConfigError when the settings do not fit
    together. Use as a decorator beside the code the rule protects."""
    if check not in RULES:
        RULES.append(check)
    return check


def forget(*names: str) -> None:
    """Remove settings (and nothing else): for tests that declare a component of their own."""
    for name in names:
        SETTINGS.pop(name, None)


def settings() -> list[Setting]:
    """Every setting, section by section (:data:`SECTIONS`), in the order of declaration within a section."""
    return sorted(SETTINGS.values(), key=lambda s: SECTIONS.index(s.section))
