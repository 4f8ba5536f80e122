"""The registry of self-supervised methods: a method is its target branches, its objective and its predictor.

A :class:`Method` says, for a run's settings, where the positive targets come from (``target``: ``ema``, a momentum
encoder; ``stop-grad``, the online network under stop-gradient; ``online``, the online network with gradient, see
:mod:`.target`), whether it uses negatives (``negatives``: their branch is ``--negative-target``, by default the
positive target's), which objective is minimised (``objective``: a module of :mod:`.objectives`), in which forms
(``forms``, the first is the default: ``loss``, ``gradient``, ``unified``; unigrad.md Table 2), and whether it has a
predictor. The step (:mod:`..engine.step`) assembles a run from these answers and never asks for a method by name.

Adding a method is one objective file in :mod:`.objectives` and one :func:`register` call here (docs/layout.md, "Adding
a method"). Table 2 of UniGrad, row by row: (a) moco --form gradient, (b) simclr --form gradient, (c) byol, (d) byol
--form gradient, (e) unigrad, (f) barlowtwins --form gradient, (g) barlowtwins --form unified --norm bn, (h)
barlowtwins --form unified, (i) vicreg --form gradient, (j) vicreg --form unified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ssltheory.practice.methods.objectives import Objective, Regression
from ssltheory.practice.methods.predictors import trained_by_sgd
from ssltheory.practice.settings import Setting, declare, rule
from ssltheory.theory.checks import ConfigError


def _always(value: Any) -> Callable[[Any], Any]:
    return lambda cfg: value


NO_BALANCE: Callable[[Any], float | None] = _always(None)
"""The ``lam`` of a method without a balance factor."""


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
    lam: Callable[[Any], float | None] = NO_BALANCE
    trains_target: bool = True  # whether its loss form lets gradients reach an online target
    norms: Callable[[Any], tuple[str, ...]] = _always(())
    settings: tuple[Setting, ...] = ()
    check: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:  # a plain bool is accepted for predictor / negatives
        for name in ("predictor", "negatives"):
            if isinstance(getattr(self, name), bool):
                object.__setattr__(self, name, _always(getattr(self, name)))

    def graph_safe(self, cfg: Any) -> bool:
        """Whether its step may be captured as a CUDA graph and replayed: its objective says so
        (:attr:`~.objectives.base.Objective.graph_safe`: False for one that keeps state across steps, a running F or
        a queue, or that reads host values)."""
        return bool(self.objective(cfg).graph_safe)


METHODS: dict[str, Method] = {}
"""Every method by name (``--method``)."""


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (replacing one of the same name) with its own settings, shown in its
    ``--help`` panel ("Method: NAME" unless a setting names another; a setting's ``only`` makes it refused with other
    methods, otherwise a recipe may set it for every cell); returns it."""
    own = tuple(s if s.panel else replace(s, panel=f"Method: {method.name}") for s in method.settings)
    method = replace(method, settings=own)
    declare(*own)
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
        # as the released loss_simclr_grad_mm. MoCo's queue holds earlier batches' keys only: nothing to mask.
        return Contrastive(cfg.proj_dim, tau=cfg.tau, form=cfg.resolved_form, queue_size=cfg.queue_size if queue else 0,
                           mask_self=not queue and cfg.resolved_negative_target in ("online", "stop-grad"))
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


def _decorrelation_norms(kind: str, trainer_default: dict[str, str] | None = None
                         ) -> Callable[[Any], tuple[str, ...]]:
    """The normalisations the run's form accepts (:data:`~.objectives.decorrelation.NORMS`), the trainer's default
    first: ``trainer_default`` per form where it is not the objective's own (Barlow Twins' unified form trains on l2
    rows, form (h); ``--norm bn`` is form (g))."""
    def norms(cfg) -> tuple[str, ...]:
        from ssltheory.practice.methods.objectives.decorrelation import NORMS

        accepted = NORMS[kind].get(cfg.resolved_form, ())
        first = (trainer_default or {}).get(cfg.resolved_form)
        return (first, *(n for n in accepted if n != first)) if first in accepted else accepted
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


INFONCE = (
    Setting("tau", 0.2, "temperature τ of InfoNCE", "Method", float, paper="0.2", low=0.0, low_open=True, high=100.0,
            panel="Method: moco, simclr"),
)
RUNNING_F = (
    Setting("f_rho", 0.99, "moving-average rate ρ of the method's F (unigrad; byol --form gradient)", "Method", float,
            paper="0.99", low=0.0, high=1.0, high_open=True, panel="Method: unigrad, byol --form gradient"),
)
DIRECTPRED_GRADIENT = (
    Setting("gradient_eps", 0.3, "ε of W_p = U diag(sqrt(s/s_max) + ε) Uᵀ and M = F/s_max + ε² I", "Method", float,
            paper="0.3", low=0.0, high=10.0, panel="Method: byol --form gradient"),
)


register(Method("byol", "momentum-encoder target (EMA of the online network, --gamma-a), predictor, regression; "
                "--form gradient: the BYOL gradient with a DirectPred predictor from F (Table 2 (d))",
                target=_always("ema"), objective=_byol, predictor=_not_gradient,
                negatives=lambda cfg: cfg.resolved_form == "gradient", forms=("loss", "gradient"),
                settings=(*RUNNING_F, *DIRECTPRED_GRADIENT)))
register(Method("simsiam", "the online network as its own target under stop-gradient (--no-stop-grad: with "
                "gradient), predictor, regression",
                target=lambda cfg: "stop-grad" if cfg.stop_grad else "online", objective=_regression))
register(Method("moco", "InfoNCE (--tau) of a momentum key against a queue of momentum keys (--queue-size)",
                target=_always("ema"), objective=_contrastive(queue=True), predictor=False, negatives=True,
                forms=("loss", "gradient"), settings=(*INFONCE, Setting(
                    "queue_size", 65536, "momentum keys kept in the queue of negatives", "Method", int,
                    paper="65536", low=1, high=10**7))))
register(Method("simclr", "InfoNCE (--tau) against the batch's other views, each query's own feature masked "
                "(with ema negatives its momentum copy stays, as the released code); loss: both branches online",
                target=_loss_online_else_ema, objective=_contrastive(queue=False), predictor=False, negatives=True,
                forms=("loss", "gradient"), settings=INFONCE))
register(Method("barlowtwins", "cross-correlation of the two views' standardised outputs to the identity "
                "(--lambda off-diagonal weight)", target=_loss_online_else_ema, objective=_barlowtwins,
                predictor=False, negatives=_unified, forms=("loss", "gradient", "unified"),
                lam=_decorrelation_lam("barlowtwins"), norms=_decorrelation_norms("barlowtwins", {"unified": "l2"})))
register(Method("vicreg", "invariance + variance + covariance of the two views' outputs", target=_loss_online_else_ema,
                objective=_vicreg, predictor=False, negatives=_unified, forms=("loss", "gradient", "unified"),
                lam=_decorrelation_lam("vicreg"), norms=_decorrelation_norms("vicreg")))
register(Method("unigrad", "-u2ᵗ + λ F u1: the unified gradient, F the moving correlation of the negatives (λ 100, "
                "--f-rho 0.99), momentum target", target=_always("ema"), objective=_unigrad, predictor=False,
                negatives=True, forms=("gradient", "loss"), lam=_unigrad_lam, trains_target=False,
                norms=_always(("l2", "none")), settings=RUNNING_F))


def _form(cfg: Any) -> str:
    """The method's form: ``--form``, or its first (its default) when ``auto``."""
    return cfg.form if cfg.form != "auto" else METHODS[cfg.method].forms[0]


def _positive_target(cfg: Any) -> str:
    """Where the positive targets come from: ``--positive-target``, else the method's own (``ema``, ``stop-grad``,
    ``online``)."""
    return cfg.positive_target if cfg.positive_target != "auto" else METHODS[cfg.method].target(cfg)


def _negative_target(cfg: Any) -> str | None:
    """Where the negatives (and F) come from: ``--negative-target``, else the positive target's; None without
    negatives."""
    if not METHODS[cfg.method].negatives(cfg):
        return None
    return cfg.negative_target if cfg.negative_target != "auto" else cfg.resolved_positive_target


def _norm(cfg: Any) -> str:
    """``--norm``, else ``none`` on the linear model's raw outputs where the form takes them, else the form's default
    (the first it accepts), ``l2`` for a method that normalises on its own."""
    if cfg.norm != "auto":
        return cfg.norm
    norms = METHODS[cfg.method].norms(cfg)
    if cfg.resolved_backbone == "linear" and "none" in norms:
        return "none"
    return norms[0] if norms else "l2"


declare(
    Setting("method", "byol", "the self-supervised method (byol: EMA target; simsiam: target = online net; the "
            "UniGrad family: moco, simclr, barlowtwins, vicreg, unigrad; see --form)", "Method", str,
            choices=lambda: METHODS),
    Setting("loss", "auto", "cosine (the paper's nets) | l2 (Eq. 1) [auto: l2 for --backbone linear]", "Method", str,
            choices=("auto", "cosine", "l2"), resolve=lambda cfg: cfg.loss if cfg.loss != "auto" else
            "l2" if cfg.resolved_backbone == "linear" else "cosine"),
    Setting("stop_grad", True, "stop-gradient on the target branch (--no-stop-grad: a method whose target is the "
            "online network, simsiam)", "Method", bool, paper="on"),
    Setting("form", "auto", "loss (autograd through the method's own loss) | gradient (its exact gradient form, "
            "UniGrad Table 2 (a),(b),(d),(f),(i)) | unified (the simplified unified form: (e) for byol, (g)/(h) "
            "barlowtwins, (j) vicreg) [auto: the method's first: gradient for unigrad, loss otherwise]", "Method",
            str, choices=("auto", "loss", "gradient", "unified"), resolve=_form),
    Setting("lam", None, "balance factor λ of the negative gradient [default: the paper's per method and form: "
            "unigrad 100; barlowtwins 5e-3 (off-diagonal weight; bn) / 50 (unified l2); vicreg 1 (the covariance "
            "weight of its loss and gradient) / 25 (unified)]", "Method", float | None, low=0.0, low_open=True,
            high=1e6, flag="--lambda",
            resolve=lambda cfg: cfg.lam if cfg.lam is not None else METHODS[cfg.method].lam(cfg)),
    Setting("positive_target", "auto", "branch of the positive target u2ᵗ: online (with gradient) | stop-grad (the "
            "online net, detached) | ema (momentum encoder, --gamma-a) [auto: the method's own]", "Method", str,
            choices=("auto", "online", "stop-grad", "ema"), resolve=_positive_target),
    Setting("negative_target", "auto", "branch of the negatives / F (moco, simclr, unigrad, byol --form gradient, "
            "barlowtwins / vicreg --form unified): online | stop-grad | ema [auto: the positive target's]", "Method",
            str, choices=("auto", "online", "stop-grad", "ema"), resolve=_negative_target),
    Setting("norm", "auto", "normalisation of the outputs (unigrad, barlowtwins, vicreg --form unified): l2 | bn "
            "(standardised over the batch; barlowtwins) | none (raw outputs: the linear model's unified flow) [auto: "
            "none for --backbone linear; barlowtwins bn, l2 for --form unified; l2]", "Method", str,
            choices=("auto", "bn", "l2", "none"), resolve=_norm),
)


@rule
def _check_method(cfg: Any) -> None:
    """The method's settings: its forms, its branches, its balance factor, its normalisation, its predictor; then
    the method's own rule (:attr:`Method.check`)."""
    method, form = METHODS[cfg.method], cfg.resolved_form
    if form not in method.forms:
        raise ConfigError(f"--form {cfg.form} with --method {cfg.method} is not accepted: expected one of "
                          f"{', '.join(method.forms)}")
    if not cfg.stop_grad and cfg.positive_target not in ("auto", "online"):
        raise ConfigError(f"--no-stop-grad with --positive-target {cfg.positive_target} is not accepted: expected "
                          "--positive-target online (the same thing) or no --no-stop-grad")
    if not method.negatives(cfg) and cfg.negative_target != "auto":
        raise ConfigError(f"--negative-target {cfg.negative_target} with --method {cfg.method} (--form {form}) is not "
                          "accepted: it uses no negatives; expected no --negative-target")
    positive, negative = cfg.resolved_positive_target, cfg.resolved_negative_target
    if (form != "loss" or not method.trains_target) and "online" in (positive, negative):
        which = "--positive-target" if positive == "online" else "--negative-target"
        raise ConfigError(f"{which} online with --method {cfg.method} --form {form} is not accepted: this form treats "
                          "its targets and negatives as constants; expected stop-grad or ema")
    if cfg.lam is not None and method.lam(cfg) is None:
        able = [m for m, spec in METHODS.items() if spec.lam is not NO_BALANCE]
        raise ConfigError(f"--lambda {cfg.lam} with --method {cfg.method} (--form {form}) is not accepted: it has no "
                          f"balance factor; expected no --lambda, or --method {', '.join(able)}")
    norms = method.norms(cfg)
    if cfg.norm != "auto" and cfg.norm not in norms:
        able = [f"{m} ({'|'.join(spec.norms(cfg))})" for m, spec in METHODS.items() if spec.norms(cfg)]
        raise ConfigError(f"--norm {cfg.norm} with --method {cfg.method} --form {form} is not accepted: expected "
                          + (f"--norm {' or '.join(norms)}" if norms else "no --norm (it l2-normalises; --loss "
                             "chooses for byol/simsiam)") + f"; at this form: {', '.join(able)}")
    if not cfg.stop_grad and positive != "online":
        online = [m for m, spec in METHODS.items() if spec.target(cfg) == "online"]
        raise ConfigError(f"--no-stop-grad with --method {cfg.method} is not accepted: expected --method "
                          f"{' or '.join(online)}, whose target is the online network (W_a = W) that gradients can "
                          "flow through")
    if not method.predictor(cfg) and cfg.predictor != "linear":
        raise ConfigError(f"--predictor {cfg.predictor} with --method {cfg.method} --form {form} is not accepted: that "
                          "method and form have no trained predictor (byol --form gradient sets W_p from F); expected "
                          "no --predictor")
    if cfg.fix_pred_lr and not (method.predictor(cfg) and trained_by_sgd(cfg)):
        raise ConfigError(f"--fix-pred-lr with --method {cfg.method} --predictor {cfg.predictor} (--freq {cfg.freq}) "
                          "is not accepted: no predictor is trained by SGD; expected a trained predictor (linear, mlp, "
                          "symmetric; directpred or optimal with --freq > 1)")
    if method.check is not None:
        method.check(cfg)
