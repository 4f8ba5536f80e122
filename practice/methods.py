"""The registry of self-supervised methods: a method is its target branch, its objective and its predictor.

A :class:`Method` says, for a run's settings, how the targets are made (``target``: ``ema``, a momentum encoder;
``stop-grad``, the online network under stop-gradient; ``online``, the online network with gradient, see
:mod:`.target`), which objective is minimised (``objective``: a module of :mod:`.objectives`) and whether it has a
predictor. The step (:mod:`.step`) assembles a run from these three answers and never asks for a method by name.

Adding a method is one :class:`Method` and one :func:`register` call (README, "Adding a method").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .objectives import Regression


@dataclass(frozen=True)
class Method:
    """A method: ``target(cfg)`` -> target mode, ``objective(cfg)`` -> the objective module, ``predictor``: whether
    the online branch has a predictor (``--predictor``; False: the identity)."""

    name: str
    summary: str
    target: Callable[[Any], str]
    objective: Callable[[Any], nn.Module]
    predictor: bool = True


METHODS: dict[str, Method] = {}
"""Every method by name (``--method``)."""


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (replacing one of the same name) and return it."""
    METHODS[method.name] = method
    return method


def _regression(cfg) -> nn.Module:
    return Regression(cfg.resolved_loss)


register(Method("byol", "momentum-encoder target (EMA of the online network, --gamma-a), predictor, regression",
                target=lambda cfg: "ema", objective=_regression))
register(Method("simsiam", "the online network as its own target under stop-gradient (--no-stop-grad: with "
                "gradient), predictor, regression",
                target=lambda cfg: "stop-grad" if cfg.stop_grad else "online", objective=_regression))
