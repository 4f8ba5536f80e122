"""What the theory commands write, as library calls: a recipe passes a config instead of re-entering the CLI.

Each function checks its settings and that ``out`` can be created and written (nothing is created yet), computes,
then creates ``out`` and writes its files with :mod:`ssltheory.theory.io`, and returns what it wrote and computed;
none prints. Bad settings or a bad ``out`` raise :class:`~ssltheory.theory.params.ConfigError` and a failed run a
:class:`~ssltheory.theory.params.RunError`, both before any file is written. The command line (``ssltheory
phase-portrait``, ``fixed-points``, ``simulate``) parses its flags, calls these and prints the tables.

- :func:`phase_portrait`: ``phase_portrait.png``, ``fixed_points.json``, ``config.json`` (Fig. 3).
- :func:`fixed_points`: ``parabola_flow.png``, ``fixed_points.json``, ``config.json`` (Fig. 4).
- :func:`simulate`: ``trajectories.png``, ``trajectories.json``, ``config.json`` (Fig. 5 and the other models);
  :func:`simulation_configs` builds the sweep the ``simulate`` command runs.

``method`` (:data:`METHODS`) picks the flow of ``fixed_points`` and ``simulate``: ``byol`` (the DirectPred paper's,
the default, unchanged) or a unified gradient form of UniGrad (:mod:`.unified`, derivations there): then
:func:`fixed_points` writes ``unified_flow.png`` (s_j' at tau = 1 and s* against eta) with the fixed points of
(U3)-(U4), ``method="all"`` the comparison of every form with BYOL (``unified_forms.png``, ``unified_forms.json``),
and :func:`simulate` runs :class:`UnifiedRun` configs (modes (U3)-(U4) or matrices (U1)/(U2) with X = I).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from . import integrate, plots, unified
from .fixed_points import collapse_threshold, parabola_fixed_points, parabola_points
from .fixed_points import fixed_points as find_fixed_points
from .io import check_out_dir, make_out_dir, save_figure, save_json
from .params import ConfigError, ModeParams, RunError, SimulationConfig, check_choice, check_constant, parse_floats
from .resources import check_memory, check_time
from .simulate import BLOWUP, COLLAPSE_S, SimulationResult, _finite_samples, _pad
from .simulate import simulate as run_simulation

Progress = Callable[[str], AbstractContextManager[Callable[[float], None]]]
"""``progress(description)``: a context manager yielding ``update(fraction)`` (``cli.output.progress`` is one)."""

_SWEPT = ("eta", "beta")
_MODE_FIELDS = tuple(f.name for f in dataclasses.fields(ModeParams) if f.name not in _SWEPT)
_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(SimulationConfig) if f.name not in ("model", "params"))


def _write(out: Path, files: list[tuple[str, Callable[[Path], Path]]]) -> list[Path]:
    """Create ``out`` and write ``(name, save)`` pairs into it; a failed write (disk full, ...) is a RunError."""
    folder = make_out_dir(out)
    try:
        return [save(folder / name) for name, save in files]
    except OSError as e:
        raise RunError(f"writing into --out {out} failed: {e.strerror or e}") from None


def _common(values: list) -> Any:
    """The value if all are equal, else the list (a config.json entry for panels that share or differ in it)."""
    return values[0] if all(v == values[0] for v in values) else values


def phase_portrait_params(eta: float | str | Sequence[float] = (0.0, 0.01, 1.0), alpha_p: float = 1.0,
                          tau: float = 1.0, sigma2: float = 0.5) -> list[ModeParams]:
    """The panels of the ``phase-portrait`` command: one :class:`ModeParams` per eta at fixed ``tau`` (Fig. 3's
    defaults); ``eta`` a number, a sequence or a comma-separated string."""
    etas = parse_floats("--eta", eta, low=0.0)
    return [ModeParams(eta=e, alpha_p=alpha_p, sigma2=sigma2, tau_fixed=tau, ema=False) for e in etas]


def phase_portrait(out: Path, params: list[ModeParams], tau: float) -> dict:
    """Phase portrait of (p_j, s_j) at fixed ``tau``, one panel per entry of ``params`` (Fig. 3).

    Writes ``phase_portrait.png``, ``fixed_points.json`` (``{"panels": records}``) and ``config.json``; returns
    ``{"paths": [...], "records": records}``, one record per panel with its fixed points as dicts.
    """
    if not params:
        raise ConfigError("phase portrait with no parameter set: expected at least one --eta")
    check_out_dir(out)
    fig = plots.phase_portrait_figure(params, tau)
    records = [{"eta": p.eta, "alpha_p": p.alpha_p, "tau": tau, "sigma2": p.sigma2,
                "collapse_threshold_eta": collapse_threshold(tau, p.sigma2),
                "fixed_points": [fp.to_dict() for fp in find_fixed_points(p, tau=tau)]} for p in params]
    config = {"command": "phase-portrait", "eta": [p.eta for p in params],
              "alpha_p": _common([p.alpha_p for p in params]), "tau": tau,
              "sigma2": _common([p.sigma2 for p in params])}
    paths = _write(out, [("phase_portrait.png", lambda p: save_figure(fig, p)),
                         ("fixed_points.json", lambda p: save_json(p, {"panels": records})),
                         ("config.json", lambda p: save_json(p, config))])
    return {"paths": paths, "records": records}


def _regime(eta: float, threshold: float) -> str:
    """Which of Fig. 4's three weight-decay regimes ``eta`` is in, given the collapse threshold."""
    if eta == 0:
        return "eta = 0: 0 semi-stable (saddle), tau/(1+sigma^2) stable"
    if eta <= threshold:
        return "0 < eta <= threshold: 0 stable, p*- unstable, p*+ stable"
    return "eta > threshold: collapse"


def fixed_points(out: Path, etas: Sequence[float] | None, tau: float = 1.0, sigma2: float = 0.5,
                 method: str = "byol", **unified_settings: Any) -> dict:
    """p' on the invariant parabola against p, one panel per weight decay (Fig. 4).

    ``etas``: ``None`` gives 0, half and twice the collapse threshold tau^2 / (4 (1 + sigma^2)) (the three
    regimes). Writes ``parabola_flow.png``, ``fixed_points.json`` and ``config.json``; returns
    ``{"paths": [...], "regimes": [...], "threshold": float}``.

    ``method``: a unified form (:func:`unified_fixed_points`) or ``all`` (:func:`unified_forms`) instead of
    ``byol``; ``unified_settings`` (``lam``, ``f_branch``, ``temperature``, ``ema``, ``beta``) are theirs.
    """
    check_choice("--method", method, (*METHODS, "all"))
    unknown = [k for k in unified_settings if k not in UNIFIED_DEFAULTS]
    if unknown:
        raise ConfigError(f"fixed-points setting {unknown[0]!r} is not known: expected tau, sigma2, method or one "
                          f"of {', '.join(UNIFIED_DEFAULTS)}")
    check_constant("--lambda", unified_settings.get("lam", 1.0), low=0.0, low_open=True)
    if method == "all":
        _not_for(method, unified_settings, {k: UNIFIED_DEFAULTS[k] for k in ("f_branch", "ema", "beta")},
                 "it with a single --method (all shows both F branches, and the collapsed point under EMA for every "
                 "β)")
        return unified_forms(out, etas, tau=tau, sigma2=sigma2, **{k: v for k, v in unified_settings.items()
                                                                    if k in ("lam", "temperature")})
    if method != "byol":
        _not_for(method, {"tau": tau}, {"tau": 1.0}, "it with --method byol only (τ of a unified form follows the "
                 "EMA flow (U4), and is 1 under --no-ema)")
        return unified_fixed_points(out, etas, unified_params(method, sigma2=sigma2, **unified_settings))
    _not_for(method, unified_settings, UNIFIED_DEFAULTS, "it with a unified --method (unigrad, vicreg, barlowtwins, "
             "simclr); byol's fixed points here are at fixed --tau")
    ModeParams(sigma2=sigma2, tau_fixed=tau, ema=False)  # validates
    thr = collapse_threshold(tau, sigma2)
    etas = [0.0, 0.5 * thr, 2.0 * thr] if etas is None else parse_floats("--eta", list(etas), low=0.0)
    if not etas:
        raise ConfigError("--eta is empty: expected at least one weight decay")
    for e in etas:
        ModeParams(eta=e, sigma2=sigma2, tau_fixed=tau, ema=False)  # the same bounds as every other command
    check_out_dir(out)
    regimes = [{"eta": e, "regime": _regime(e, thr), "fixed_points": parabola_points(e, tau, sigma2)} for e in etas]
    fig = plots.parabola_flow_figure(etas, tau, sigma2)
    data = {"tau": tau, "sigma2": sigma2, "collapse_threshold_eta": thr, "regimes": regimes}
    config = {"command": "fixed-points", "eta": etas, "tau": tau, "sigma2": sigma2}
    paths = _write(out, [("parabola_flow.png", lambda p: save_figure(fig, p)),
                         ("fixed_points.json", lambda p: save_json(p, data)),
                         ("config.json", lambda p: save_json(p, config))])
    return {"paths": paths, "regimes": regimes, "threshold": thr}


def simulation_configs(model: str = "modes", eta: float | str | Sequence[float] = (0.04,),
                       beta: float | str | Sequence[float] = (0.4,), method: str = "byol",
                       **kwargs: Any) -> list[SimulationConfig] | list[UnifiedRun]:
    """The sweep of the ``simulate`` command: one :class:`SimulationConfig` per beta x eta (beta outer).

    ``method``: a unified form instead of ``byol`` gives :class:`UnifiedRun` configs (:func:`unified_runs`).

    ``eta``, ``beta``: a number, a sequence or a comma-separated string. Keywords are the fields of
    :class:`ModeParams` (``alpha_p``, ``sigma2``, ``ema``, ``stop_grad``, ``predictor``, ``eps``, ``eta_p``, and
    ``tau`` for ``tau_fixed``) and of :class:`SimulationConfig` (``lr``, ``steps``, ``integrator``, ``p0``, ``s0``,
    ``tau0``, ``dim``, ``init_scale``, ``batch``, ``rho``, ``seed``, ``samples``); ``p0``/``s0`` may be sequences
    or comma-separated strings (an empty ``s0`` is ``None``). What is not given keeps the dataclasses' default.
    An unknown keyword raises :class:`ConfigError` naming it.
    """
    check_choice("--method", method, METHODS)
    check_constant("--lambda", kwargs.get("lam", 1.0), low=0.0, low_open=True)
    if method != "byol":
        return unified_runs(model, eta, beta, method, **kwargs)
    form_only = {k: UNIFIED_DEFAULTS[k] for k in ("lam", "f_branch", "temperature")}  # byol has ema and beta too
    _not_for(method, kwargs, form_only, "it with a unified --method (unigrad, vicreg, barlowtwins, simclr)")
    kwargs = {k: v for k, v in kwargs.items() if k not in form_only}
    if "tau" in kwargs:
        if "tau_fixed" in kwargs:
            raise ConfigError("tau and tau_fixed are both given: expected one of them")
        kwargs["tau_fixed"] = kwargs.pop("tau")
    unknown = [k for k in kwargs if k not in _MODE_FIELDS and k not in _RUN_FIELDS]
    if unknown:
        raise ConfigError(f"simulation setting {unknown[0]!r} is not known: expected one of "
                          f"{', '.join(sorted({*_MODE_FIELDS, *_RUN_FIELDS, 'tau'} - {'tau_fixed'}))}")
    etas = parse_floats("--eta", eta, low=0.0)
    betas = parse_floats("--beta", beta, low=0.0, high=1.0, low_open=True)
    run = {k: v for k, v in kwargs.items() if k in _RUN_FIELDS}
    if "p0" in run:
        run["p0"] = tuple(parse_floats("--p0", run["p0"]))
    if "s0" in run:
        s0 = run["s0"]
        run["s0"] = tuple(parse_floats("--s0", s0, low=0.0)) if s0 is not None and s0 != "" else None
    mode = {k: v for k, v in kwargs.items() if k in _MODE_FIELDS}
    return [SimulationConfig(model=model, params=ModeParams(eta=e, beta=b, **mode), **run)
            for b in betas for e in etas]


def simulate(out: Path, configs: list[SimulationConfig], progress: Progress | None = None) -> dict:
    """Run every config (one model for all) and write ``trajectories.png``, ``trajectories.json``, ``config.json``.

    ``progress``: optional ``progress(description)`` context manager yielding ``update(fraction)``, entered once
    per run. Returns ``{"paths": [...], "results": [SimulationResult, ...]}``.
    """
    if not configs:
        raise ConfigError("simulate with no configuration: expected at least one")
    model = configs[0].model
    if any(c.model != model for c in configs):
        raise ConfigError(f"simulate with models {sorted({c.model for c in configs})}: expected one model per call")
    uni = isinstance(configs[0], UnifiedRun)
    if any(isinstance(c, UnifiedRun) != uni for c in configs):
        raise ConfigError("simulate with byol and unified configs: expected one method per call")
    shadows = [cfg.shadow() if uni else cfg for cfg in configs]
    for cfg in shadows:
        check_memory(cfg)  # every run of the sweep, before the first allocates anything
    check_time(shadows)  # and the whole sweep's time, before the first step
    check_out_dir(out)
    run_one = simulate_unified if uni else run_simulation
    name = f"{configs[0].params.form} {model}" if uni else model
    results = []
    for i, cfg in enumerate(configs):
        if progress is None:
            results.append(run_one(cfg))
            continue
        with progress(f"{name} {i + 1}/{len(configs)} η={cfg.params.eta:g} β={cfg.params.beta:g}") as update:
            results.append(run_one(cfg, on_progress=update))
    _refuse_if_all_diverged(results)
    if uni:
        fig = (plots.unified_modes_figure if model == "modes" else plots.unified_matrix_figure)(results)
    else:
        fig = {"modes": plots.modes_figure, "reduced": plots.reduced_figure}.get(model, plots.matrix_figure)(results)
    runs = {"runs": [{**({"method": r.config.params.form} if uni else {}), "eta": r.config.params.eta,
                      "beta": r.config.params.beta, "t": r.t, "series": r.series, "summary": r.summary}
                     for r in results]}
    config = {"command": "simulate", "runs": [c.to_dict() for c in configs]}
    paths = _write(out, [("trajectories.png", lambda p: save_figure(fig, p)),
                         ("trajectories.json", lambda p: save_json(p, runs)),
                         ("config.json", lambda p: save_json(p, config))])
    return {"paths": paths, "results": results}


def _refuse_if_all_diverged(results: list) -> None:
    """A sweep in which every trajectory diverged has nothing to show: a RunError (exit status 1) instead of a table
    of NaN. When only some diverged, the others are worth keeping and the summaries mark the diverged ones."""
    def diverged(r) -> list[bool]:
        d = r.summary.get("diverged", False)
        return list(d) if isinstance(d, list) else [d]

    if not all(all(diverged(r)) for r in results):
        return
    first = results[0]
    by = first.summary["diverged_by_t"]
    by = min(b for b in by if b is not None) if isinstance(by, list) else by
    cfg = first.config
    how = "the SGD step" if cfg.model == "sgd" else "the Euler step"  # solve_ivp raises IntegrationError itself
    advice = "a smaller --lr" + (" or a solve_ivp --integrator (rk45, dop853, lsoda)" if cfg.model != "sgd" else "")
    raise RunError(f"every trajectory diverged (not finite, or beyond 1e30, by t = {by:g} in the first run, "
                   f"η = {cfg.params.eta:g}) under {how} --lr {cfg.lr:g}: expected settings whose trajectories stay "
                   f"finite, e.g. {advice}")


# The unified gradient forms of UniGrad (theory/unified.py): settings, fixed points, simulation.

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
    fig = plots.unified_flow_figure(panels)
    constants = _unified_constants(params)
    data = {**constants, "s_star_formula": "(1 - eta) / (balance kappa), balance = lambda (1/temperature for simclr)",
            "collapse_condition": "eta >= 1", "regimes": regimes}
    config = {"command": "fixed-points", "eta": etas,
              **{k: v for k, v in constants.items() if k not in ("balance", "kappa", "q", "time_scale")}}
    paths = _write(out, [("unified_flow.png", lambda p: save_figure(fig, p)),
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
    fig = plots.unified_portrait_figure(panels)
    records = [_unified_record(p) for p in panels]
    constants = _unified_constants(params)
    config = {"command": "phase-portrait", "eta": etas,
              **{k: v for k, v in constants.items() if k not in ("balance", "kappa", "q", "time_scale")}}
    paths = _write(out, [("phase_portrait.png", lambda p: save_figure(fig, p)),
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
    fig = plots.unified_forms_figure(data)
    config = {"command": "fixed-points", "method": "all", "eta": etas, "lambda": lam, "tau": tau, "sigma2": sigma2,
              "temperature": temperature}
    paths = _write(out, [("unified_forms.png", lambda p: save_figure(fig, p)),
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
