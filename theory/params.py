"""Model constants of the two-layer linear BYOL/SimSiam dynamics, with validation and the paper's defaults.

Symbols follow Tian, Chen & Ganguli (2021), "Understanding self-supervised learning dynamics without
contrastive pairs" (see ``shared/papers/directpred.md``):

- ``alpha_p``: learning-rate ratio of the predictor W_p to the online network W (Eq. 2).
- ``eta``: weight decay in the continuous-time flow (the discrete decay is ``alpha * eta``).
- ``eta_p``: weight decay of the predictor; ``None`` means the same as ``eta`` (Eq. 2 as printed).
- ``beta``: EMA rate of the target relative to the online learning rate (Eq. 4); ``alpha * beta = 1 - gamma_a``.
- ``sigma2``: augmentation variance sigma^2 of the isotropic model (X = I, X' = sigma^2 I).
- ``tau``: the target-to-online ratio W_a = tau W of Assumption 1 (tau = 1 without EMA).

Nothing here does I/O. Invalid values raise :class:`ConfigError` with a one-line message that names the
value and what is accepted; the command line prints that line and exits with status 2.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .checks import ConfigError, check_choice, check_int, check_number

PREDICTORS = ("linear", "symmetric", "directpred", "none")
"""Predictor variants of the theory: gradient-trained W_p, symmetrised W_p, DirectPred, identity."""

MODELS = ("modes", "matrix", "sgd", "reduced")
"""Levels of description: decoupled eigen-modes, full-matrix ODE (Lemma 1), finite-batch SGD."""

INTEGRATORS = ("euler", "rk45", "dop853", "lsoda")
"""Integrators: fixed-step Euler of step alpha (the discrete process) or a scipy ``solve_ivp`` method."""


MAX_CONSTANT = 1e6
"""Largest magnitude accepted for the theory's constants and starts (eta, eta_p, alpha_p, sigma^2, tau, eps, p0, s0,
tau0, lr, init_scale); alpha_p, which also divides (s = p^2 / alpha_p), is at least 1 / MAX_CONSTANT.

The paper's values are O(1). The flow is a polynomial of degree at most 5 in these numbers (e.g.
s' = 2 p s (tau - (1 + sigma^2) p)), so with every factor at most 1e6 the rates at the start stay below about 1e36
and the Jacobians and eigenvalue problems built from them (which square such numbers) below 1e80: float64 (largest
1.8e308) computes the phase portraits, fixed points and first integration steps without overflow. Far larger values
(1e200, 1e308) overflow to inf/nan at the first evaluation: a LinAlgError at --eta 1e308, a broken streamplot grid
at --tau 1e200, a table of NaN at --sigma2 1e308."""

MAX_STEPS = 2 ** 53
"""Largest ``--steps``: step indices k and times k * lr stay exact in float64 (and the run ends in this universe)."""

_CAP_NOTE = "the theory's constants are capped at 1e6 to keep float64 arithmetic of the flow finite"
TAU_NOTE = ("τ = W_a/W, the EMA target's ratio to the online weights, starts at 0 and rises toward 1 (Assumption 1, "
            "Eq. 15): τ < 0 is no state of the model; τ is capped at 1e6 to keep float64 arithmetic finite")


def check_constant(name: str, value: Any, *, low: float | None = None, low_open: bool = False,
                   high: float | None = None, note: str = _CAP_NOTE) -> float:
    """:func:`check_number` with the float64 cap :data:`MAX_CONSTANT` (and ``-MAX_CONSTANT`` when ``low`` is None)."""
    return check_number(name, value, low=-MAX_CONSTANT if low is None else low, low_open=low_open,
                        high=MAX_CONSTANT if high is None else high, note=note)


@dataclass(frozen=True)
class ModeParams:
    """Constants of the decoupled eigen-mode dynamics (Eqs. 11-13) and of Lemma 1 (Eqs. 2-4).

    Defaults are the Fig. 5 setting of the paper (beta = 0.4, eta = 0.04, alpha_p = 1) with the
    augmentation variance sigma^2 = 0.5 of the paper's sanity check (Fig. 5's is not stated).
    ``ema=False`` is SimSiam: the target is the online network (tau = 1, W_a = W).
    ``tau_fixed`` freezes tau at a value (Fig. 3 uses tau = 1) instead of integrating Eq. 13.
    """

    alpha_p: float = 1.0
    eta: float = 0.04
    sigma2: float = 0.5
    beta: float = 0.4
    ema: bool = True
    stop_grad: bool = True
    predictor: str = "linear"
    eta_p: float | None = None
    tau_fixed: float | None = None
    eps: float = 0.0

    def __post_init__(self) -> None:
        # alpha_p = 0 would freeze the predictor and leave the invariant parabola s = p^2 / alpha_p (and Theorem 1's
        # W_p^T W_p / alpha_p) undefined: rejected rather than patched over.
        check_constant("--alpha-p", self.alpha_p, low=1.0 / MAX_CONSTANT,
                       note="α_p is the predictor's learning-rate ratio: s = p²/α_p needs α_p > 0, and 1/α_p "
                            "is a factor of the flow's window and of Theorem 1, so α_p is kept in [1e-6, 1e6] to "
                            "keep float64 arithmetic finite")
        check_constant("--eta", self.eta, low=0.0)
        check_constant("--sigma2", self.sigma2, low=0.0)
        check_number("--beta", self.beta, low=0.0, high=1.0, low_open=True)
        if self.eta_p is not None:
            check_constant("--eta-p", self.eta_p, low=0.0)
        if self.tau_fixed is not None:
            # tau = W_a / W (Assumption 1): the EMA target W_a averages past W, so from W_a(0) = 0 it starts at 0 and
            # rises toward 1 (Eq. 15; above 1 only at a collapse, beta / (beta - eta)). A tau < 0 would be a target
            # pointing against the online network, which no EMA makes: the fixed points of such a flow (p* < 0) are
            # not states of BYOL, so they are refused rather than drawn and labelled.
            check_constant("--tau", self.tau_fixed, low=0.0, note=TAU_NOTE)
        check_constant("--eps", self.eps, low=0.0)
        check_choice("--predictor", self.predictor, PREDICTORS)
        if not self.stop_grad and self.ema:
            raise ConfigError("--no-stop-grad with --ema is not accepted: expected --no-ema with it, since "
                              "without stop-gradient the target must be the online network (W_a = W, Theorem 2)")

    @property
    def eta_pred(self) -> float:
        """Weight decay acting on the predictor W_p (``eta_p`` if set, else ``eta``)."""
        return self.eta if self.eta_p is None else self.eta_p

    @property
    def tau_dynamic(self) -> bool:
        """True when tau follows Eq. 13 (EMA target and no fixed tau)."""
        return self.ema and self.tau_fixed is None

    @property
    def needs_nonnegative_p0(self) -> bool:
        """True when a decoupled mode must start at p_j >= 0 for the modes' answer to be trusted: under a dynamic
        EMA target (Eq. 13) with a trained predictor (linear, symmetric).

        tau_j = W_a / W_j: from p_j < 0 the online weight W_j shrinks (Delta_j < 0) faster than the EMA target
        follows, so tau' ~ |p| tau^2 races p back to 0. Whether tau blows up first depends on p0 and on the
        integrator (Euler of step 0.01 blows up from p0 = -10, or -2 at eta = 0; dop853 reports a collapse; from a
        convnet's weak modes, p_j(0) ~ -0.05 with beta 0.03, every solve_ivp method stalls at the same finite t as
        tau passes 1e14), so no answer from this parametrisation can be trusted there. A simulation refuses such
        starts; the phase diagram leaves such modes out of run and theory alike. At fixed tau p < 0 is fine."""
        return self.tau_dynamic and self.predictor in ("linear", "symmetric")

    def replace(self, **changes: Any) -> ModeParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass
class SimulationConfig:
    """One simulation run: everything needed to reproduce its figures, saved as ``config.json``.

    ``lr`` is the Euler step alpha (the online learning rate of the discrete process); time is
    ``t = step * lr``. ``p0`` are initial predictor eigenvalues, one mode each; ``s0`` defaults to the
    invariant parabola s = p^2 / alpha_p. ``dim`` is n1 = n2 of the full-matrix and SGD models.
    """

    model: str = "modes"
    params: ModeParams = field(default_factory=ModeParams)
    lr: float = 0.01
    steps: int = 100_000
    integrator: str = "euler"
    p0: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.3)
    s0: tuple[float, ...] | None = None
    tau0: float = 0.0
    dim: int = 8
    init_scale: float = 0.3
    batch: int = 1024
    rho: float = 0.3
    seed: int = 0
    samples: int = 400

    def __post_init__(self) -> None:
        check_choice("--model", self.model, MODELS)
        check_choice("--integrator", self.integrator, INTEGRATORS)
        check_constant("--lr", self.lr, low=0.0, low_open=True)
        check_int("--steps", self.steps, low=1, high=MAX_STEPS)
        check_int("--dim", self.dim, low=1)
        check_int("--batch", self.batch, low=1)
        check_int("--samples", self.samples, low=2)
        check_int("--seed", self.seed, low=0)  # numpy's generators take non-negative seeds only
        check_constant("--init-scale", self.init_scale, low=0.0, low_open=True)
        check_number("--rho", self.rho, low=0.0, high=1.0, high_open=True)
        check_constant("--tau0", self.tau0)
        if self.model == "reduced" and not self.params.stop_grad:
            raise ConfigError("--model reduced with --no-stop-grad is not accepted: expected --stop-grad (Eqs. 62 "
                              "and 67 are derived with the stop-gradient)")
        if self.model == "reduced" and self.params.predictor not in ("linear", "symmetric"):
            raise ConfigError(f"--model reduced with --predictor {self.params.predictor} is not accepted: expected "
                              "--predictor linear (Eq. 62) or symmetric (Eq. 67)")
        if len(self.p0) == 0:
            raise ConfigError("--p0 is empty: expected at least one initial eigenvalue")
        for v in self.p0:
            check_constant("--p0", v)
        if self.s0 is not None:
            if len(self.s0) != len(self.p0):
                raise ConfigError(f"--s0 has {len(self.s0)} values but --p0 has {len(self.p0)}: "
                                  "expected one s0 per mode")
            for v in self.s0:
                check_constant("--s0", v, low=0.0)
        if self.model == "sgd" and self.integrator != "euler":
            raise ConfigError(f"--integrator {self.integrator!r} does not apply to --model sgd: expected euler")
        self._check_discrete_process()
        self._check_negative_start_under_ema()

    def _check_discrete_process(self) -> None:
        """Euler and SGD are the discrete process of step lr: its EMA and weight decay are per-step factors.

        1 - gamma_a = lr * beta must be at most 1 (gamma_a in [0, 1)), and the weight decay multiplies the weights by
        1 - lr * eta per step, which stops being a decay (it flips their sign) once lr * eta > 1. solve_ivp
        integrates the flow, where lr only sets the time unit, so neither applies there.
        """
        if self.integrator != "euler" and self.model != "sgd":
            return
        a, lr = self.params, self.lr
        if a.ema and lr * a.beta > 1.0:
            raise ConfigError(f"--lr {lr:g} with --beta {a.beta:g} gives 1 - γ_a = lr·β = {lr * a.beta:g}: expected "
                              f"lr·β <= 1 (γ_a = 1 - lr·β in [0, 1)), i.e. --lr <= {1.0 / a.beta:g}")
        decays = [("--eta", a.eta)] + ([("--eta-p", a.eta_p)] if a.eta_p is not None else [])
        for name, eta in decays:
            if lr * eta > 1.0:
                raise ConfigError(f"--lr {lr:g} with {name} {eta:g} scales the weights by 1 - lr·η = {1 - lr * eta:g} "
                                  f"per step: expected lr·η <= 1 in the discrete process (euler, sgd), i.e. {name} <= "
                                  f"{1.0 / lr:g} or --lr <= {1.0 / eta:g} (or a solve_ivp --integrator)")

    def _check_negative_start_under_ema(self) -> None:
        """A decoupled mode that starts with p < 0 under EMA is refused (the promise of docs/theory.md; why:
        :attr:`ModeParams.needs_nonnegative_p0`)."""
        if self.model != "modes" or not self.params.needs_nonnegative_p0:
            return
        for v in self.p0:
            if v < 0:
                raise ConfigError(f"--p0 {v:g} is negative with an EMA target: expected p0 >= 0 with --ema (from p < 0 "
                                  "the mode shrinks faster than the target follows and τ = W_a/W of Eq. 13 can blow "
                                  "up in finite time); for p0 < 0 use --no-ema or a fixed --tau")

    @property
    def t_end(self) -> float:
        """Total continuous time ``steps * lr``."""
        return self.steps * self.lr

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulationConfig:
        """Inverse of :meth:`to_dict`; also reads configs saved before the rename of ``method`` to ``integrator``."""
        d = dict(d)
        if "method" in d:
            d.setdefault("integrator", d.pop("method"))
        d["params"] = ModeParams(**d.get("params", {}))
        for key in ("p0", "s0"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)
