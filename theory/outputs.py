"""What the theory commands write, as library calls: a recipe passes a config instead of re-entering the CLI.

Each function checks its settings and that ``out`` can be created and written (nothing is created yet), computes,
then creates ``out`` and writes its files with :mod:`ssltheory.theory.io`, and returns what it wrote and computed;
none prints. Bad settings or a bad ``out`` raise :class:`~ssltheory.theory.checks.ConfigError` and a failed run a
:class:`~ssltheory.theory.checks.RunError`, both before any file is written. The command line (``ssltheory
phase-portrait``, ``fixed-points``, ``simulate``) parses its flags, calls these and prints the tables.

- :func:`phase_portrait`: ``phase_portrait.png``, ``fixed_points.json``, ``config.json`` (Fig. 3).
- :func:`fixed_points`: ``parabola_flow.png``, ``fixed_points.json``, ``config.json`` (Fig. 4).
- :func:`simulate`: ``trajectories.png``, ``trajectories.json``, ``config.json`` (Fig. 5 and the other models);
  :func:`simulation_configs` builds the sweep the ``simulate`` command runs.

``method`` (:data:`METHODS`) picks the flow of ``fixed_points`` and ``simulate``: ``byol`` (the DirectPred paper's,
the default, whose files are made here) or a unified gradient form of UniGrad (:mod:`.unified`, derivations there;
its files are made by :mod:`.unified_outputs`): then :func:`fixed_points` writes ``unified_flow.png`` (s_j' at tau = 1
and s* against eta) with the fixed points of (U3)-(U4), ``method="all"`` the comparison of every form with BYOL
(``unified_forms.png``, ``unified_forms.json``), and :func:`simulate` runs :class:`UnifiedRun` configs (modes (U3)-(U4)
or matrices (U1)/(U2) with X = I).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from . import plots, unified_plots
from .checks import ConfigError, RunError, check_choice, parse_floats
from .fixed_points import collapse_threshold, parabola_points
from .fixed_points import fixed_points as find_fixed_points
from .io import check_out_dir, common, save_figure, save_json, write_files
from .params import ModeParams, SimulationConfig, check_constant
from .resources import check_memory, check_time
from .simulate import simulate as run_simulation
from .unified_outputs import (
    METHODS,
    UNIFIED_DEFAULTS,
    UnifiedRun,
    _not_for,
    phase_portrait_settings,
    simulate_unified,
    unified_fixed_points,
    unified_forms,
    unified_params,
    unified_phase_portrait,
    unified_runs,
)

Progress = Callable[[str], AbstractContextManager[Callable[[float], None]]]
"""``progress(description)``: a context manager yielding ``update(fraction)`` (``cli.output.progress`` is one)."""

_SWEPT = ("eta", "beta")
_MODE_FIELDS = tuple(f.name for f in dataclasses.fields(ModeParams) if f.name not in _SWEPT)
_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(SimulationConfig) if f.name not in ("model", "params"))


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
              "alpha_p": common([p.alpha_p for p in params]), "tau": tau,
              "sigma2": common([p.sigma2 for p in params])}
    paths = write_files(out, [("phase_portrait.png", lambda p: save_figure(fig, p)),
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
    paths = write_files(out, [("parabola_flow.png", lambda p: save_figure(fig, p)),
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
        fig = (unified_plots.unified_modes_figure if model == "modes" else unified_plots.unified_matrix_figure)(results)
    else:
        fig = {"modes": plots.modes_figure, "reduced": plots.reduced_figure}.get(model, plots.matrix_figure)(results)
    runs = {"runs": [{**({"method": r.config.params.form} if uni else {}), "eta": r.config.params.eta,
                      "beta": r.config.params.beta, "t": r.t, "series": r.series, "summary": r.summary}
                     for r in results]}
    config = {"command": "simulate", "runs": [c.to_dict() for c in configs]}
    paths = write_files(out, [("trajectories.png", lambda p: save_figure(fig, p)),
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


def _simulate_command(out: Path, progress: Progress | None = None, **settings: Any) -> dict:
    return simulate(out, simulation_configs(**settings), progress)


def _phase_portrait_command(out: Path, progress: Progress | None = None, **settings: Any) -> dict:
    method = settings.pop("method", "byol")
    if method != "byol":
        etas = settings.pop("eta", None)
        phase_portrait_settings(method, settings)
        return unified_phase_portrait(out, None if etas is None else parse_floats("--eta", etas, low=0.0),
                                      unified_params(method, **settings))
    tau = settings.get("tau", 1.0)
    return phase_portrait(out, phase_portrait_params(**settings), tau)


def _fixed_points_command(out: Path, progress: Progress | None = None, eta: Any = None, **settings: Any) -> dict:
    return fixed_points(out, None if eta is None else parse_floats("--eta", eta, low=0.0), **settings)


COMMANDS: dict[str, Callable[..., dict]] = {"phase-portrait": _phase_portrait_command,
                                            "fixed-points": _fixed_points_command, "simulate": _simulate_command}
"""Every theory command by its name on the command line: ``COMMANDS[name](out, progress=None, **settings)`` writes
its files (settings named as the command's flags: ``eta``, ``tau``, ``model``, ...). The command line registers one
command per entry (``cli/main.py``, with the flags of ``cli/theory_cmds.py``) and the recipes run them
(``experiments/recipes.py``): the one list of theory commands."""
