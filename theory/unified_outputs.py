"""What the theory commands write for the unified gradient forms of UniGrad (:mod:`.unified`): their settings, fixed
points, phase portraits, the comparison of every form with BYOL, and their simulations. The command-level entry
points (:mod:`.outputs`) dispatch here for ``--method`` other than ``byol``; as there, nothing prints, bad settings
raise :class:`~.checks.ConfigError` before any file is written, and the files go through :func:`.io.write_files`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import integrate, unified, unified_plots
from .checks import ConfigError, check_choice, parse_floats
from .fixed_points import collapse_threshold, parabola_fixed_points
from .io import check_out_dir, save_figure, save_json, write_files
from .params import ModeParams, SimulationConfig, check_constant
from .simulate import BLOWUP, COLLAPSE_S, SimulationResult, _finite_samples, _pad

METHODS = ("byol", *unified.FORMS)
"""``--method`` of ``fixed-points`` and ``simulate``: the DirectPred paper's BYOL flow (the default) or a unified
form; ``fixed-points`` also takes ``all`` (:func:`unified_forms`)."""
UNIFIED_DEFAULTS = {"lam": 1.0, "f_branch": "momentum", "temperature": 0.2, "ema": True, "beta": 0.4}
"""The settings of the unified forms that byol does not take, with their defaults (:class:`unified.UnifiedParams`)."""
UNIFIED_ETAS = (0.04, 0.5, 1.1)
"""``fixed-points`` weight decays of a unified form by default: Fig. 5's 0.04, 0.5, and collapse beyond eta = 1."""
UNIFIED_S0 = (0.01, 0.1, 0.5, 1.0, 2.0)
"""Initial s_j of ``simulate --model modes`` for a unified form by default: below and above every form's s*."""
UNIFIED_MODELS = ("modes", "matrix", "sgd")
ETA_AXIS = 1.2
"""The eta axis of :func:`unified_forms` runs from 0 to this (or to the largest eta given)."""
FORM_VARIANTS = (("unigrad, F momentum", "unigrad", "momentum"), ("unigrad, F online", "unigrad", "online"),
                 ("vicreg", "vicreg", "momentum"), ("barlowtwins", "barlowtwins", "momentum"),
                 ("simclr (approx.)", "simclr", "momentum"))
"""(label, form, F branch) of every unified variant :func:`unified_forms` compares."""
_BYOL_ONLY = {"alpha_p": 1.0, "stop_grad": True, "predictor": "linear", "eps": 0.0, "eta_p": None, "tau": None,
              "tau_fixed": None, "p0": SimulationConfig().p0}
_UNIFIED_RUN_FIELDS = ("lr", "steps", "integrator", "s0", "tau0", "dim", "init_scale", "seed", "samples", "batch")
_SGD_ONLY = ("batch", "rho")  # ignored by the modes and matrix runs, as byol's ignore them (rho: DirectPred's)


def _flag(name: str, value: Any) -> str:
    """How the user spells a setting and its value: ``--lambda 2``, ``--no-ema``, ``--f-branch 'online'``."""
    flag = "--lambda" if name == "lam" else "--tau" if name == "tau_fixed" else "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    if isinstance(value, (tuple, list)):
        return f"{flag} {','.join(f'{v:g}' for v in value)}"
    return f"{flag} {value:g}" if isinstance(value, (int, float)) else f"{flag} {value!r}"


def _not_for(method: str, given: dict[str, Any], defaults: dict[str, Any], expected: str) -> None:
    """A setting of ``defaults`` given with another value is not used by ``method``: a one-line error."""
    for name, default in defaults.items():
        if name in given and given[name] != default:
            raise ConfigError(f"{_flag(name, given[name])} does not apply to --method {method}: expected {expected}")


def phase_portrait_settings(method: str, given: dict[str, Any]) -> None:
    """``phase-portrait``'s settings that ``method`` does not use, given with another value than their default
    (``--alpha-p``, ``--tau`` for a unified form; ``--lambda`` and the rest of :data:`UNIFIED_DEFAULTS` for byol): a
    one-line error."""
    check_choice("--method", method, METHODS)
    if method == "byol":
        _not_for(method, given, UNIFIED_DEFAULTS, "it with a unified --method (unigrad, vicreg, barlowtwins, simclr)")
    else:
        _not_for(method, given, {"alpha_p": 1.0, "tau": 1.0}, "it with --method byol only (a unified form has no "
                 "predictor, and its τ follows the EMA flow (U4))")


def unified_params(method: str, *, eta: float = 0.0, sigma2: float = 0.5, lam: float = 1.0,
                   f_branch: str = "momentum", temperature: float = 0.2, ema: bool = True,
                   beta: float = 0.4) -> unified.UnifiedParams:
    """The :class:`unified.UnifiedParams` of ``--method``; a setting the form does not use (``--lambda`` for simclr,
    whose balance is 1/T; ``--temperature`` but for simclr; ``--f-branch online`` for barlowtwins) is refused."""
    check_choice("--method", method, unified.FORMS)
    if method == "simclr":
        _not_for(method, {"lam": lam}, {"lam": 1.0}, "no --lambda (the contrastive approximation's balance is "
                 "1/--temperature)")
    else:
        _not_for(method, {"temperature": temperature}, {"temperature": 0.2}, "--temperature with --method simclr "
                 "only")
    if method == "barlowtwins":
        _not_for(method, {"f_branch": f_branch}, {"f_branch": "momentum"}, "no --f-branch (Barlow Twins' C is "
                 "made of both branches, (U2))")
    return unified.UnifiedParams(form=method, lam=lam, eta=eta, sigma2=sigma2, beta=beta, ema=ema, f_branch=f_branch,
                                 temperature=temperature)


def _unified_constants(params: unified.UnifiedParams) -> dict:
    """The constants of a unified form for its JSON: the flags and what (U3) makes of them."""
    return {"method": params.form, "lambda": params.lam, "balance": params.balance, "kappa": params.kappa,
            "q": params.q, "time_scale": params.time_scale, "sigma2": params.sigma2, "ema": params.ema,
            "beta": params.beta, "f_branch": params.f_branch, "temperature": params.temperature}


def _unified_record(params: unified.UnifiedParams) -> dict:
    """The fixed points of (U3)-(U4) at ``params`` (s, tau, kind, eigenvalues), s* and the regime."""
    fps = unified.fixed_points(params)
    points = [{k: v for k, v in fp.to_dict().items() if k != "p"} for fp in fps]
    kind0 = fps[0].kind
    regime = (f"eta < 1: s* = {params.s_star:.4g} {fps[-1].kind}, 0 {kind0}" if params.eta < 1 else
              f"eta >= 1: collapse, 0 {kind0}")
    return {"eta": params.eta, "s_star": params.s_star, "collapsed": params.eta >= 1, "regime": regime,
            "fixed_points": points}


def _etas(etas: Sequence[float] | None) -> list[float]:
    etas = list(UNIFIED_ETAS) if etas is None else parse_floats("--eta", list(etas), low=0.0)
    if not etas:
        raise ConfigError("--eta is empty: expected at least one weight decay")
    return etas


def unified_fixed_points(out: Path, etas: Sequence[float] | None, params: unified.UnifiedParams) -> dict:
    """The fixed points of (U3)-(U4) for one unified form, one record per weight decay (``params.eta`` is replaced).

    ``etas``: ``None`` gives :data:`UNIFIED_ETAS`. Writes ``unified_flow.png`` (s_j' at tau = 1 against s, s*
    against eta), ``fixed_points.json`` (per eta: s, tau, kind and eigenvalues of each fixed point, s*, and the
    collapse condition eta >= 1) and ``config.json``; returns ``{"paths": [...], "regimes": [...], "method": form}``.
    """
    etas = _etas(etas)
    panels = [dataclasses.replace(params, eta=e) for e in etas]  # validates each
    check_out_dir(out)
    regimes = [_unified_record(p) for p in panels]
    fig = unified_plots.unified_flow_figure(panels)
    constants = _unified_constants(params)
    data = {**constants, "s_star_formula": "(1 - eta) / (balance kappa), balance = lambda (1/temperature for simclr)",
            "collapse_condition": "eta >= 1", "regimes": regimes}
    config = {"command": "fixed-points", "eta": etas,
              **{k: v for k, v in constants.items() if k not in ("balance", "kappa", "q", "time_scale")}}
    paths = write_files(out, [("unified_flow.png", lambda p: save_figure(fig, p)),
                         ("fixed_points.json", lambda p: save_json(p, data)),
                         ("config.json", lambda p: save_json(p, config))])
    return {"paths": paths, "regimes": regimes, "method": params.form}


def unified_phase_portrait(out: Path, etas: Sequence[float] | None, params: unified.UnifiedParams) -> dict:
    """Phase portrait of one mode of a unified form, one panel per weight decay: the (s_j, tau_j) flow of (U3)-(U4)
    under EMA, s_j' against s_j under stop-gradient, with the fixed points by kind. ``etas``: ``None`` gives
    :data:`UNIFIED_ETAS`. Writes ``phase_portrait.png``, ``fixed_points.json`` (``{"panels": records}``) and
    ``config.json``; returns ``{"paths": [...], "records": records}``."""
    etas = _etas(etas)
    panels = [dataclasses.replace(params, eta=e) for e in etas]  # validates each
    check_out_dir(out)
    fig = unified_plots.unified_portrait_figure(panels)
    records = [_unified_record(p) for p in panels]
    constants = _unified_constants(params)
    config = {"command": "phase-portrait", "eta": etas,
              **{k: v for k, v in constants.items() if k not in ("balance", "kappa", "q", "time_scale")}}
    paths = write_files(out, [("phase_portrait.png", lambda p: save_figure(fig, p)),
                         ("fixed_points.json", lambda p: save_json(p, {**constants, "panels": records})),
                         ("config.json", lambda p: save_json(p, config))])
    return {"paths": paths, "records": records}


def unified_forms(out: Path, etas: Sequence[float] | None = None, tau: float = 1.0, sigma2: float = 0.5,
                  lam: float = 1.0, temperature: float = 0.2) -> dict:
    """Every unified form against BYOL: s* of each form (:data:`FORM_VARIANTS`) against eta in [0, ``ETA_AXIS``],
    BYOL/DirectPred's p*_+- of Eq. 16 at fixed ``tau`` with its collapse threshold tau^2 / (4 (1 + sigma^2)) on the
    same axis, and the collapsed point's tau0* and stability against beta under EMA at each of ``etas`` (default
    :data:`UNIFIED_ETAS`). Writes ``unified_forms.png``, ``unified_forms.json`` and ``config.json``; returns
    ``{"paths": [...], "forms": [...], "byol": {...}, "etas": [...]}``."""
    etas = _etas(etas)
    ModeParams(sigma2=sigma2, tau_fixed=tau, ema=False)  # validates --tau, --sigma2
    check_constant("--lambda", lam, low=0.0, low_open=True)
    for e in etas:
        check_constant("--eta", e, low=0.0)
    check_out_dir(out)
    grid = np.linspace(0.0, max(ETA_AXIS, *etas), 241)
    betas = np.linspace(0.01, 1.0, 100)
    forms = []
    for label, form, branch in FORM_VARIANTS:
        base = unified.UnifiedParams(form=form, lam=lam, sigma2=sigma2, f_branch=branch, temperature=temperature)
        by_eta = []
        for e in etas:
            collapsed = [unified.fixed_points(dataclasses.replace(base, eta=e, beta=b))[0] for b in betas]
            by_eta.append({"eta": e, "tau0": [fp.tau for fp in collapsed], "kind": [fp.kind for fp in collapsed],
                           "eigenvalues": [[[float(np.real(v)), float(np.imag(v))] for v in fp.eigenvalues]
                                           for fp in collapsed]})
        forms.append({"label": label, **_unified_constants(base),
                      "s_star": [dataclasses.replace(base, eta=e).s_star for e in grid],
                      "fixed_points_at_beta": [_unified_record(dataclasses.replace(base, eta=e)) for e in etas],
                      "collapsed_vs_beta": by_eta})
    pm, pp = zip(*(parabola_fixed_points(e, tau, sigma2) for e in grid), strict=True)
    byol = {"tau": tau, "sigma2": sigma2, "alpha_p": 1.0, "collapse_threshold_eta": collapse_threshold(tau, sigma2),
            "p_star_minus": list(pm), "p_star_plus": list(pp)}
    data = {"eta": grid, "beta": betas, "etas": etas, "lambda": lam, "sigma2": sigma2, "temperature": temperature,
            "collapse_condition": "eta >= 1 (every unified form, whatever lambda, sigma^2, beta)", "forms": forms,
            "byol": byol}
    fig = unified_plots.unified_forms_figure(data)
    config = {"command": "fixed-points", "method": "all", "eta": etas, "lambda": lam, "tau": tau, "sigma2": sigma2,
              "temperature": temperature}
    paths = write_files(out, [("unified_forms.png", lambda p: save_figure(fig, p)),
                         ("unified_forms.json", lambda p: save_json(p, data)),
                         ("config.json", lambda p: save_json(p, config))])
    return {"paths": paths, "forms": forms, "byol": byol, "etas": etas}


@dataclasses.dataclass(frozen=True)
class UnifiedRun:
    """One simulation of a unified form: the modes (U3)-(U4) from ``s0`` (tau from ``tau0`` under EMA, 1 under
    stop-gradient), or the matrices (U1)/(U2) with X = I from the random W(0) of byol's matrix run of the same
    ``seed`` and ``init_scale`` (``dim`` = n1 = n2), with W_a(0) = tau0 W(0) under EMA (0 by default, as Fig. 7's
    W_a(0) = 0) and W_a = W under stop-gradient."""

    model: str
    params: unified.UnifiedParams
    lr: float = 0.01
    steps: int = 100_000
    integrator: str = "euler"
    s0: tuple[float, ...] = UNIFIED_S0
    tau0: float = 0.0
    dim: int = 8
    init_scale: float = 0.3
    seed: int = 0
    samples: int = 400
    batch: int = 256

    def __post_init__(self) -> None:
        _check_unified_model(self.model, self.params.form)
        if len(self.s0) == 0:
            raise ConfigError("--s0 is empty: expected at least one initial eigenvalue")
        self.shadow()  # validates the rest

    def shadow(self) -> SimulationConfig:
        """The run as a byol :class:`SimulationConfig`: its checks (``--lr`` against β and η, ``--steps``, ...) and
        its memory estimate (an upper bound: it counts a predictor the unified forms do not have)."""
        a = self.params
        return SimulationConfig(model=self.model, params=ModeParams(eta=a.eta, beta=a.beta, sigma2=a.sigma2,
                                                                    ema=a.ema),
                                lr=self.lr, steps=self.steps, integrator=self.integrator, p0=(1.0,) * len(self.s0),
                                s0=self.s0, tau0=self.tau0, dim=self.dim, init_scale=self.init_scale, seed=self.seed,
                                samples=self.samples, batch=self.batch)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of the run."""
        return {"method": self.params.form, **dataclasses.asdict(self)}


def _check_unified_model(model: str, form: str) -> None:
    if model not in UNIFIED_MODELS:
        raise ConfigError(f"--model {model!r} is not covered by --method {form}: expected modes ((U3)-(U4)), matrix "
                          "((U1)/(U2)) or sgd (their per-sample gradient); reduced is byol's")


def unified_runs(model: str, eta: float | str | Sequence[float], beta: float | str | Sequence[float], method: str,
                 **kwargs: Any) -> list[UnifiedRun]:
    """The ``simulate`` sweep of a unified form: one :class:`UnifiedRun` per beta x eta (beta outer). Keywords: the
    form's (``lam``, ``f_branch``, ``temperature``, ``sigma2``, ``ema``) and the run's (``lr``, ``steps``,
    ``integrator``, ``s0`` (default :data:`UNIFIED_S0`), ``tau0``, ``dim``, ``init_scale``, ``seed``, ``samples``);
    byol's predictor settings with other than their defaults are refused, an unknown keyword too."""
    _check_unified_model(model, method)
    kwargs = dict(kwargs)
    if "p0" in kwargs:
        kwargs["p0"] = tuple(parse_floats("--p0", kwargs["p0"]))
    _not_for(method, kwargs, _BYOL_ONLY, "it with --method byol only (the unified forms have no predictor, no fixed "
             "τ and a stop-gradient or EMA target; their modes start at --s0)")
    known = {*UNIFIED_DEFAULTS, "sigma2", *_BYOL_ONLY, *_UNIFIED_RUN_FIELDS, *_SGD_ONLY}
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        raise ConfigError(f"simulation setting {unknown[0]!r} is not known: expected one of "
                          f"{', '.join(sorted(known - {'tau_fixed'}))}")
    form = {k: v for k, v in kwargs.items() if k in UNIFIED_DEFAULTS or k == "sigma2"}
    run = {k: v for k, v in kwargs.items() if k in _UNIFIED_RUN_FIELDS}
    s0 = run.get("s0")
    run["s0"] = tuple(parse_floats("--s0", s0, low=0.0)) if s0 is not None and s0 != "" else UNIFIED_S0
    etas = parse_floats("--eta", eta, low=0.0)
    betas = parse_floats("--beta", beta, low=0.0, high=1.0, low_open=True)
    return [UnifiedRun(model, unified_params(method, eta=e, beta=b, **form), **run) for b in betas for e in etas]


def simulate_unified(run: UnifiedRun, on_progress: Callable[[float], None] | None = None) -> SimulationResult:
    """Integrate ``run``: ``series`` are ``s`` and ``tau`` per mode (modes), or the eigenvalues ``s`` of W Wᵀ (in
    descending order), ``corr_Wa_W`` and ``norm_W`` (matrix); the summary has the final values, s* and the fixed
    points, and marks diverged runs as byol's do."""
    a = run.params
    s0 = np.asarray(run.s0, float)
    if run.model == "modes":
        y0 = np.stack([s0, np.full_like(s0, run.tau0 if a.ema else 1.0)], axis=-1)
        traj = integrate.integrate(unified.mode_field(a), y0, dt=run.lr, steps=run.steps, method=run.integrator,
                                   samples=run.samples, on_progress=on_progress)
        s, tau = traj.y[..., 0], traj.y[..., 1]
        with np.errstate(invalid="ignore"):
            finite = (np.isfinite(traj.y) & (np.abs(traj.y) <= BLOWUP)).all(axis=-1)  # (T, modes)
        diverged, first_bad = ~finite[-1], np.argmin(finite, axis=0)
        collapsed = (s[-1] < COLLAPSE_S) & ~diverged
        with np.errstate(invalid="ignore"):
            settled = np.abs(s[-1] - a.s_star) <= 1e-6 + 1e-4 * a.s_star
        summary = {"s0": list(run.s0), "final_s": s[-1].tolist(), "final_tau": tau[-1].tolist(), "s_star": a.s_star,
                   "collapsed": collapsed.tolist(), "diverged": diverged.tolist(),
                   "diverged_by_t": [float(traj.t[i]) if d else None for i, d in zip(first_bad, diverged, strict=True)],
                   "outcome": ["diverged" if d else "collapsed" if c else "at s*" if k else "not settled"
                               for d, c, k in zip(diverged, collapsed, settled, strict=True)],
                   "fixed_points": _unified_record(a)}
        return SimulationResult(run, traj.t, {"s": s, "tau": tau}, summary)
    n = run.dim
    W0 = np.random.default_rng(run.seed).standard_normal((n, n)) * run.init_scale / np.sqrt(n)  # byol's W(0)
    X = np.eye(n)

    def field(t: float, y: np.ndarray) -> np.ndarray:
        W = y[0]
        dW, dWa = unified.matrix_rates(W, y[1] if a.ema else W, a, X)
        return np.stack([dW, dWa if a.ema else dW])  # under stop-gradient the stored W_a follows W

    Wa0 = (run.tau0 if a.ema else 1.0) * W0
    if run.model == "sgd":
        traj = unified.run_sgd(a, W0, Wa0, lr=run.lr, steps=run.steps, batch=run.batch, seed=run.seed,
                               samples=run.samples, on_progress=on_progress)
    else:
        traj = integrate.integrate(field, np.stack([W0, Wa0]), dt=run.lr, steps=run.steps, method=run.integrator,
                                   samples=run.samples, on_progress=on_progress)
    ok = _finite_samples(traj.y)
    W, Wa = traj.y[:ok, 0], traj.y[:ok, 1]
    norm_W, norm_Wa = np.linalg.norm(W, axis=(1, 2)), np.linalg.norm(Wa, axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.einsum("tij,tij->t", W, Wa) / (norm_W * norm_Wa)
    series = _pad({"s": np.linalg.eigvalsh(W @ np.swapaxes(W, 1, 2))[:, ::-1], "corr_Wa_W": corr, "norm_W": norm_W},
                  len(traj.t))
    final = series["s"][-1]
    live = final[final >= COLLAPSE_S]
    summary = {"final_s": final.tolist(), "s_star": a.s_star, "collapsed_modes": int(np.sum(final < COLLAPSE_S)),
               "max_rel_error_s_star": float(np.max(np.abs(live / a.s_star - 1))) if live.size and a.s_star > 0
               else None,
               "final_corr_Wa_W": float(series["corr_Wa_W"][-1]), "final_norm_W": float(series["norm_W"][-1]),
               "fixed_points": _unified_record(a), "diverged": ok < len(traj.t),
               "diverged_by_t": float(traj.t[ok]) if ok < len(traj.t) else None}
    return SimulationResult(run, traj.t, series, summary)
