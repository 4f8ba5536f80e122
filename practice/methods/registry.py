"""The registry of self-supervised methods: a method is its target branches, its objective and its predictor.

A :class:`Method` says, for a run's settings, where the positive targets come from (``target``: ``ema``, a momentum
encoder; ``stop-grad``, the online network under stop-gradient; ``online``, the online network with gradient, see
:mod:`.target`), whether it uses negatives (``negatives``: their branch is ``--negative-target``, by default the
positive target's), which objective is minimised (``objective``: a module of :mod:`.objectives`), in which forms
(``forms``, the first is the default: ``loss``, ``gradient``, ``unified``; unigrad.md Table 2), and whether it has a
predictor. The step (:mod:`..engine.step`) assembles a run from these answers and never asks for a method by name.

Adding a method is one objective file in :mod:`.objectives` and one :func:`register` call here (README, "Adding a
method"). Table 2 of UniGrad, row by row: (a) moco --form gradient, (b) simclr --form gradient, (c) byol, (d) byol
--form gradient, (e) unigrad, (f) barlowtwins --form gradient, (g) barlowtwins --form unified --norm bn, (h)
barlowtwins --form unified, (i) vicreg --form gradient, (j) vicreg --form unified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssltheory.practice.methods.objectives import Objective, Regression


def _always(value: Any) -> Callable[[Any], Any]:
    return lambda cfg: value


@dataclass(frozen=True)
class Method:
    """A method: ``target(cfg)`` -> its own positive-target branch, ``objective(cfg)`` -> the objective module,
    ``predictor(cfg)``: whether the online branch has a predictor (``--predictor``; False: the identity),
    ``negatives(cfg)``: whether the objective reads negatives (``Views.n1``, ``n2``), ``forms``: the forms it has,
    the default first; ``lam(cfg)``: the paper's balance factor for the run's form (None: the method has none);
    ``trains_target``: whether its loss form passes gradients to an online target (UniGrad's explicit loss holds
    its targets constant); ``norms(cfg)``: the output normalisations (``--norm``) the run's form accepts, its default
    first (empty: the method l2-normalises, or ``--loss`` chooses for BYOL / SimSiam). A method whose norms include
    ``none`` runs on the raw outputs of the linear model, where :mod:`ssltheory.theory.unified` gives its flow."""

    name: str
    summary: str
    target: Callable[[Any], str]
    objective: Callable[[Any], Objective]
    predictor: Callable[[Any], bool] = _always(True)
    negatives: Callable[[Any], bool] = _always(False)
    forms: tuple[str, ...] = ("loss",)
    lam: Callable[[Any], float | None] = _always(None)
    trains_target: bool = True  # whether its loss form lets gradients reach an online target
    norms: Callable[[Any], tuple[str, ...]] = _always(())

    def __post_init__(self) -> None:  # a plain bool is accepted for predictor / negatives
        for name in ("predictor", "negatives"):
            if isinstance(getattr(self, name), bool):
                object.__setattr__(self, name, _always(getattr(self, name)))


METHODS: dict[str, Method] = {}
"""Every method by name (``--method``)."""


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (replacing one of the same name) and return it."""
    METHODS[method.name] = method
    return method


def _loss_online_else_ema(cfg) -> str:
    """The original loss trains both branches (SimCLR, Barlow Twins, VICReg); the paper's gradient forms take their
    targets from a momentum encoder (unigrad.md A2, Table 2)."""
    return "online" if cfg.resolved_form == "loss" else "ema"


def _regression(cfg) -> Objective:
    return Regression(cfg.resolved_loss)


def _byol(cfg) -> Objective:
    if cfg.resolved_form == "gradient":
        from ssltheory.practice.methods.objectives.asymmetric import DirectPredGradient

        return DirectPredGradient(cfg.proj_dim, eps=cfg.gradient_eps, rho=cfg.f_rho, form="gradient")
    return _regression(cfg)


def _contrastive(queue: bool) -> Callable[[Any], Objective]:
    def make(cfg) -> Objective:
        from ssltheory.practice.methods.objectives.contrastive import Contrastive

        # SimCLR's bank holds each query's own feature when the negatives are the online net's (with gradient or
        # detached): it is masked, as SimCLR's definition (k != i); a momentum copy is another network's and stays,
        # as the released loss_simclr_grad_mm
        return Contrastive(cfg.proj_dim, tau=cfg.tau, form=cfg.resolved_form, queue_size=cfg.queue_size if queue else 0,
                           mask_self=cfg.negative_mode in ("online", "stop-grad"))
    return make


def _unigrad(cfg) -> Objective:
    from ssltheory.practice.methods.objectives.asymmetric import UniGrad

    return UniGrad(cfg.proj_dim, lam=cfg.resolved_lam, rho=cfg.f_rho, form=cfg.resolved_form, norm=cfg.resolved_norm)


def _barlowtwins(cfg) -> Objective:
    from ssltheory.practice.methods.objectives.decorrelation import BarlowTwins

    return BarlowTwins(cfg.resolved_lam, form=cfg.resolved_form, norm=cfg.resolved_norm)


def _vicreg(cfg) -> Objective:
    from ssltheory.practice.methods.objectives.decorrelation import VICReg

    return VICReg(cfg.resolved_lam, form=cfg.resolved_form, norm=cfg.resolved_norm)


def _decorrelation_lam(kind: str) -> Callable[[Any], float]:
    def lam(cfg) -> float:
        from ssltheory.practice.methods.objectives.decorrelation import default_lambda

        return default_lambda(kind, cfg.resolved_form, cfg.resolved_norm)
    return lam


def _decorrelation_norms(kind: str) -> Callable[[Any], tuple[str, ...]]:
    def norms(cfg) -> tuple[str, ...]:
        from ssltheory.practice.methods.objectives.decorrelation import NORMS

        return NORMS[kind][cfg.resolved_form] if cfg.resolved_form in NORMS[kind] else ()
    return norms


def _unigrad_lam(cfg) -> float:
    """The paper's 100 on l2-normalised outputs; 1 on the raw outputs of the linear model (s* = (1 - eta) / kappa)."""
    return 1.0 if cfg.resolved_norm == "none" else 100.0


def _not_gradient(cfg) -> bool:
    return cfg.resolved_form != "gradient"


def _unified(cfg) -> bool:
    """Barlow Twins' and VICReg's own loss and exact gradient read the two views only; the unified form's negative
    term reads the negative branch."""
    return cfg.resolved_form == "unified"


register(Method("byol", "momentum-encoder target (EMA of the online network, --gamma-a), predictor, regression; "
                "--form gradient: the BYOL gradient with a DirectPred predictor from F (Table 2 (d))",
                target=_always("ema"), objective=_byol, predictor=_not_gradient,
                negatives=lambda cfg: cfg.resolved_form == "gradient", forms=("loss", "gradient")))
register(Method("simsiam", "the online network as its own target under stop-gradient (--no-stop-grad: with "
                "gradient), predictor, regression",
                target=lambda cfg: "stop-grad" if cfg.stop_grad else "online", objective=_regression))
register(Method("moco", "InfoNCE (--tau) of a momentum key against a queue of momentum keys (--queue-size)",
                target=_always("ema"), objective=_contrastive(queue=True), predictor=False, negatives=True,
                forms=("loss", "gradient")))
register(Method("simclr", "InfoNCE (--tau) against the batch's other views, each query's own feature masked "
                "(with ema negatives its momentum copy stays, as the released code); loss: both branches online",
                target=_loss_online_else_ema, objective=_contrastive(queue=False), predictor=False, negatives=True,
                forms=("loss", "gradient")))
register(Method("barlowtwins", "cross-correlation of the two views' standardised outputs to the identity "
                "(--lambda off-diagonal weight)", target=_loss_online_else_ema, objective=_barlowtwins,
                predictor=False, negatives=_unified, forms=("loss", "gradient", "unified"),
                lam=_decorrelation_lam("barlowtwins"), norms=_decorrelation_norms("barlowtwins")))
register(Method("vicreg", "invariance + variance + covariance of the two views' outputs", target=_loss_online_else_ema,
                objective=_vicreg, predictor=False, negatives=_unified, forms=("loss", "gradient", "unified"),
                lam=_decorrelation_lam("vicreg"), norms=_decorrelation_norms("vicreg")))
register(Method("unigrad", "-u2ᵗ + λ F u1: the unified gradient, F the moving correlation of the negatives (λ 100, "
                "--f-rho 0.99), momentum target", target=_always("ema"), objective=_unigrad, predictor=False,
                negatives=True, forms=("gradient", "loss"), lam=_unigrad_lam, trains_target=False,
                norms=_always(("l2", "none"))))
