"""Theory commands: ``phase-portrait``, ``fixed-points`` and ``simulate``. They parse, call and print."""

from __future__ import annotations

import typer
from rich.table import Table

from ssltheory.theory import outputs, unified_outputs
from ssltheory.theory.checks import ConfigError, check_int, parse_floats
from ssltheory.theory.modes import P_FLOOR
from ssltheory.theory.params import MAX_STEPS, ModeParams

from .output import console, hint, out_dir, progress, wrote

ETA_HELP = "weight decay η of the flow (discrete decay = lr × η); comma list for panels side by side"
ALPHA_P_HELP = "predictor learning-rate ratio α_p (lr of W_p / lr of W)"
TAU_HELP = "EMA ratio τ of W_a = τW, held fixed (1 = no EMA)"
SIGMA2_HELP = "augmentation variance σ² (X = I, X' = σ²I)"
METHOD_HELP = ("byol (the DirectPred paper's flow, Eqs. 11-13) | unigrad | vicreg | barlowtwins | simclr: UniGrad's "
               "unified gradient forms (Table 2 (e), (j), (h), (b); simclr approximately) in the linear model, without "
               "predictor (theory/unified.py)")
LAMBDA_HELP = ("balance factor λ of the negative gradient (unified forms) [1; the paper's: unigrad 100, "
               "barlowtwins 50, vicreg 25 at width 2048 with l2-normalised features; here λ only sets the scale "
               "of s* = (1−η)/(λκ)]")
F_BRANCH_HELP = ("where F = E[uuᵀ] of unigrad, vicreg, simclr comes from: momentum (the target branch, the official "
                 "code) | online [paper: momentum]")
TEMPERATURE_HELP = "temperature T of simclr, whose balance is 1/T (small-similarity approximation) [paper: 0.2]"
INTEGER = "<int>"
"""Metavar of the whole-number flags of ``simulate``, read as text so that ``1e5`` (as --help writes the paper's
values) is accepted and ``1.5`` refused in one line (:func:`~ssltheory.theory.params.check_int`)."""


def phase_portrait(
    eta: str = typer.Option("0,0.01,1", help=hint(ETA_HELP + " [paper Fig. 3: 0,0.01,1]")),
    alpha_p: float = typer.Option(1.0, help=hint(ALPHA_P_HELP + " [paper: 1]")),
    tau: float = typer.Option(1.0, help=hint(TAU_HELP + " [paper Fig. 3: 1]")),
    sigma2: float = typer.Option(0.5, help=hint(SIGMA2_HELP + " [Fig. 3 does not state it; 0.5]")),
    out: str = typer.Option("runs/phase-portrait", help=hint("output folder for PNG and JSON")),
    method: str = typer.Option("byol", help=hint(METHOD_HELP)),
    lam: float = typer.Option(1.0, "--lambda", help=hint(LAMBDA_HELP)),
    f_branch: str = typer.Option("momentum", help=hint(F_BRANCH_HELP)),
    temperature: float = typer.Option(0.2, help=hint(TEMPERATURE_HELP)),
    ema: bool = typer.Option(True, "--ema/--no-ema", help=hint("unified forms: momentum-encoder target (EMA, "
                                                               "paper: the (s, τ) plane) or stop-gradient (τ = 1)")),
    beta: float = typer.Option(0.4, help=hint("unified forms: EMA rate β relative to lr [Fig. 5: 0.4]")),
) -> None:
    """Phase portrait of (p_j, s_j) at fixed τ with the invariant parabola and fixed points (Fig. 3); with a unified
    --method, the flow of one mode (s_j, τ_j) of (U3)-(U4) for each --eta."""
    unified_outputs.phase_portrait_settings(method, {"alpha_p": alpha_p, "tau": tau, "lam": lam, "f_branch": f_branch,
                                                     "temperature": temperature, "ema": ema, "beta": beta})
    if method != "byol":
        params = unified_outputs.unified_params(method, sigma2=sigma2, lam=lam, f_branch=f_branch,
                                                temperature=temperature, ema=ema, beta=beta)
        done = unified_outputs.unified_phase_portrait(out_dir(out), parse_floats("--eta", eta, low=0.0), params)
        _print_unified_fixed_points({"regimes": done["records"], "method": method, "paths": done["paths"]})
        wrote(done["paths"])
        return
    params = outputs.phase_portrait_params(eta, alpha_p, tau, sigma2)
    done = outputs.phase_portrait(out_dir(out), params, tau)  # out_dir checks --out; the folder is made on writing
    table = Table("η", "p", "s", "kind", title="fixed points (lines: p or s range)")
    for rec in done["records"]:
        for fp in rec["fixed_points"]:
            table.add_row(f"{rec['eta']:g}", _fmt(fp["p"]), _fmt(fp["s"]), fp["kind"])
    console.print(table)
    wrote(done["paths"])


def fixed_points_cmd(
    eta: str | None = typer.Option(None, help=hint("weight decays η, comma list; default: 0, half and twice the "
                                                   "collapse threshold τ²/(4(1+σ²)) (the three regimes of Fig. 4); "
                                                   "unified forms: 0.04,0.5,1.1"), show_default=False),
    tau: float = typer.Option(1.0, help=hint(TAU_HELP + " [paper: 1]")),
    sigma2: float = typer.Option(0.5, help=hint(SIGMA2_HELP + " [0.5]")),
    out: str = typer.Option("runs/fixed-points", help=hint("output folder for PNG and JSON")),
    method: str = typer.Option("byol", help=hint(METHOD_HELP + " | all (every unified form's s* and BYOL's p*± "
                                                 "against η, and the collapsed point against β)")),
    lam: float = typer.Option(1.0, "--lambda", help=hint(LAMBDA_HELP)),
    f_branch: str = typer.Option("momentum", help=hint(F_BRANCH_HELP)),
    temperature: float = typer.Option(0.2, help=hint(TEMPERATURE_HELP)),
    ema: bool = typer.Option(True, "--ema/--no-ema", help=hint("unified forms: momentum-encoder target (EMA, "
                                                               "paper) or stop-gradient (τ = 1)")),
    beta: float = typer.Option(0.4, help=hint("unified forms: EMA rate β relative to lr [Fig. 5: 0.4]")),
) -> None:
    """p' on the invariant parabola against p for the three weight-decay regimes (Fig. 4); with a unified --method,
    the fixed points of its modes (U3)-(U4) for each --eta (default 0.04, 0.5, 1.1)."""
    unified = {"method": method, "lam": lam, "f_branch": f_branch, "temperature": temperature, "ema": ema,
               "beta": beta}
    if method != "byol":
        etas = parse_floats("--eta", eta, low=0.0) if eta is not None else None  # --eta '' is refused, not the default
        done = outputs.fixed_points(out_dir(out), etas, tau=tau, sigma2=sigma2, **unified)
        _print_unified_fixed_points(done)
        wrote(done["paths"])
        return
    ModeParams(sigma2=sigma2, tau_fixed=tau, ema=False)  # validates --tau, --sigma2 before --eta
    etas = parse_floats("--eta", eta, low=0.0) if eta is not None else None
    done = outputs.fixed_points(out_dir(out), etas, tau=tau, sigma2=sigma2, **unified)
    table = Table("η", "regime", "fixed points p (kind)",
                  title=f"Eq. 16, collapse threshold η = {done['threshold']:.4g}")
    for r in done["regimes"]:
        table.add_row(f"{r['eta']:.4g}", r["regime"],
                      ", ".join(f"{fp['p']:.4g} ({fp['kind']})" for fp in r["fixed_points"]))
    console.print(table)
    wrote(done["paths"])


def simulate(
    model: str = typer.Option("modes", help=hint("modes (decoupled Eqs. 11-13) | matrix (Lemma 1) | sgd (finite "
                                                 "batch) | reduced ((W_p, F) at fixed τ: Eq. 62, or Eq. 67 with "
                                                 "symmetric)")),
    tau: float = typer.Option(None, help=hint("fix τ instead of integrating Eq. 13 (modes; reduced: default 1)")),
    ema: bool = typer.Option(True, "--ema/--no-ema",
                             help=hint("EMA target (BYOL) or target = online net (SimSiam)")),
    beta: str = typer.Option("0.4", help=hint("EMA rate β relative to lr, lr·β = 1 − γ_a; comma list sweeps "
                                              "[paper Fig. 5: 0.4]")),
    eta: str = typer.Option("0.04", help=hint(ETA_HELP.replace("panels side by side", "a sweep, one row each")
                                              + " [paper Fig. 5: 0.04]")),
    eta_p: float | None = typer.Option(None, help=hint("weight decay of the predictor [default: same as --eta]")),
    alpha_p: float = typer.Option(1.0, help=hint(ALPHA_P_HELP + " [paper: 1]")),
    sigma2: float = typer.Option(0.5, help=hint(SIGMA2_HELP + " [0.5]")),
    stop_grad: bool = typer.Option(True, "--stop-grad/--no-stop-grad",
                                   help=hint("stop-gradient on the target branch")),
    predictor: str = typer.Option("linear", help=hint("linear | symmetric | directpred | none")),
    eps: float = typer.Option(0.0, help=hint(f"DirectPred's ε in p_j = max(sqrt(s_j / max s) + ε, {P_FLOOR:g})")),
    dim: str = typer.Option("8", help=hint("n1 = n2 of the matrix and sgd models"), metavar=INTEGER),
    steps: str = typer.Option("100000", help=hint("number of steps of size --lr; euler and sgd runs are capped at an "
                                                  "estimated hour of work [paper Fig. 5: 1e5]"), metavar=INTEGER),
    lr: float = typer.Option(0.01, help=hint("Euler step α = online learning rate [paper Fig. 5: 0.01]")),
    integrator: str = typer.Option("euler", help=hint("euler (the discrete process) | rk45 | dop853 | lsoda")),
    p0: str = typer.Option("0.01,0.05,0.1,0.2,0.3", help=hint("initial p_j of the modes, one per mode")),
    s0: str | None = typer.Option(None, help=hint("initial s_j per mode [default: on the parabola, p0²/α_p; unified "
                                                  "forms: 0.01,0.1,0.5,1,2]"), show_default=False),
    tau0: float = typer.Option(0.0, help=hint("initial τ with EMA (unified --model matrix: W_a(0) = τ0 W(0)) "
                                              "[paper Fig. 5: 0]")),
    batch: str = typer.Option("1024", help=hint("batch size of the sgd model"), metavar=INTEGER),
    rho: float = typer.Option(0.3, help=hint("DirectPred's moving-average rate ρ of F̂ (sgd model) [paper: 0.3]")),
    init_scale: float = typer.Option(0.3, help=hint("scale of the random W, W_p at t = 0 (matrix, sgd)")),
    seed: str = typer.Option("0", help=hint("random seed"), metavar=INTEGER),
    samples: str = typer.Option("400", help=hint("time samples kept in the JSON and figures"), metavar=INTEGER),
    out: str = typer.Option("runs/simulate", help=hint("output folder for PNG and JSON")),
    method: str = typer.Option("byol", help=hint(METHOD_HELP + "; a unified form runs --model modes ((U3)-(U4) "
                                                 "from --s0, τ from --tau0) or matrix ((U1)/(U2), W_a(0) = τ0 W(0))")),
    lam: float = typer.Option(1.0, "--lambda", help=hint(LAMBDA_HELP)),
    f_branch: str = typer.Option("momentum", help=hint(F_BRANCH_HELP)),
    temperature: float = typer.Option(0.2, help=hint(TEMPERATURE_HELP)),
) -> None:
    """Integrate the decoupled, full-matrix or SGD dynamics; with the defaults it reproduces Fig. 5. With a unified
    --method: its modes or full matrices (modes from --s0, default 0.01,0.1,0.5,1,2)."""
    # Every setting is checked here, then --out, then the memory and time the runs need: a bad value stops the command
    # with one line before anything is integrated or written. Whole numbers may be written as --help shows the
    # paper's (--steps 1e5); 1.5 is refused.
    ints = {"dim": check_int("--dim", dim, low=1), "steps": check_int("--steps", steps, low=1, high=MAX_STEPS),
            "batch": check_int("--batch", batch, low=1), "seed": check_int("--seed", seed, low=0),
            "samples": check_int("--samples", samples, low=2)}
    if s0 is not None and s0.strip() == "":
        raise ConfigError(f"--s0 {s0!r} is empty: expected comma-separated numbers, one per mode (leave --s0 out "
                          "for its default)")
    configs = outputs.simulation_configs(model=model, eta=eta, beta=beta, alpha_p=alpha_p, sigma2=sigma2, ema=ema,
                                         stop_grad=stop_grad, predictor=predictor, eps=eps, eta_p=eta_p, tau=tau,
                                         lr=lr, integrator=integrator, p0=p0, s0=s0, tau0=tau0,
                                         init_scale=init_scale, rho=rho, method=method, lam=lam, f_branch=f_branch,
                                         temperature=temperature, **ints)
    done = outputs.simulate(out_dir(out), configs, progress=progress)
    _print_summary(done["results"])
    wrote(done["paths"])


def _diverged(by) -> str:
    return f"diverged (t ≤ {by:.4g})"


def _print_unified_fixed_points(done: dict) -> None:
    if "forms" in done:  # --method all
        table = Table("form", "κ", "balance", "s* at η = " + ", ".join(f"{e:g}" for e in done["etas"]),
                      title=f"s* = (1−η)/(λκ), collapse at η ≥ 1; BYOL collapses above η = "
                            f"{done['byol']['collapse_threshold_eta']:.4g}")
        for f in done["forms"]:
            table.add_row(f["label"], f"{f['kappa']:g}", f"{f['balance']:g}",
                          ", ".join(f"{r['s_star']:.4g}" for r in f["fixed_points_at_beta"]))
    else:
        table = Table("η", "s*", "fixed points s, τ (kind)", title=f"{done['method']}: (U3)-(U4), collapse at η ≥ 1")
        for r in done["regimes"]:
            table.add_row(f"{r['eta']:.4g}", f"{r['s_star']:.4g}",
                          ", ".join(f"{fp['s']:.4g}, {fp['tau']:.4g} ({fp['kind']})" for fp in r["fixed_points"]))
    console.print(table)


def _print_summary(results) -> None:
    if isinstance(results[0].config, unified_outputs.UnifiedRun):
        _print_unified_summary(results)
        return
    if results[0].config.model == "modes":
        table = Table("η", "β", "p0", "final p", "final s", "final τ", "outcome", title="final state per mode")
        for r in results:
            s = r.summary
            for j, p in enumerate(r.config.p0):
                outcome = _diverged(s["diverged_by_t"][j]) if s["diverged"][j] else s["outcome"][j]
                table.add_row(f"{r.config.params.eta:g}", f"{r.config.params.beta:g}", f"{p:g}",
                              f"{s['final_p'][j]:.4f}", f"{s['final_s'][j]:.4g}", f"{s['final_tau'][j]:.4f}",
                              outcome)
    elif results[0].config.model == "reduced":
        table = Table("η", "τ", "flow", "‖A‖ start → end", "‖B‖ start → end", "‖[F,W_p]‖ start → end (max)",
                      title="reduced flow: final diagnostics")
        for r in results:
            s = r.summary
            flow = s["flow"] + (f", {_diverged(s['diverged_by_t'])}" if s["diverged"] else "")
            table.add_row(f"{r.config.params.eta:g}", f"{s['tau']:g}", flow,
                          f"{s['start_norm_A']:.3g} → {s['final_norm_A']:.3g}",
                          f"{s['start_norm_B']:.3g} → {s['final_norm_B']:.3g}",
                          f"{s['start_commutator']:.3g} → {s['final_commutator']:.3g} ({s['max_commutator']:.3g})")
    else:
        first = results[0].summary
        table = Table("η", "β", "‖W‖ final", "min alignment", "‖[F,W_p]‖", "asym",
                      f"Thm1 max ({first['theorem1_integrator']})", "collapsed modes",
                      title=f"{results[0].config.model}: final diagnostics",
                      caption=f"Theorem 1 residual: {first['theorem1_note']}")
        for r in results:
            s = r.summary
            collapsed = _diverged(s["diverged_by_t"]) if s["diverged"] else f"{s['collapsed_modes']}/{r.config.dim}"
            table.add_row(f"{r.config.params.eta:g}", f"{r.config.params.beta:g}", f"{s['final_norm_W']:.4g}",
                          f"{min(s['final_alignment']):.4f}", f"{s['final_commutator']:.3g}",
                          f"{s['final_asymmetry']:.3g}", f"{s['max_theorem1_residual']:.3g}", collapsed)
    console.print(table)


def _print_unified_summary(results) -> None:
    if results[0].config.model == "modes":
        table = Table("η", "β", "s0", "final s", "final τ", "s*", "outcome",
                      title=f"{results[0].config.params.form}: final state per mode (U3)-(U4)")
        for r in results:
            s = r.summary
            for j, s0 in enumerate(r.config.s0):
                outcome = _diverged(s["diverged_by_t"][j]) if s["diverged"][j] else s["outcome"][j]
                table.add_row(f"{r.config.params.eta:g}", f"{r.config.params.beta:g}", f"{s0:g}",
                              f"{s['final_s'][j]:.6g}", f"{s['final_tau'][j]:.4f}", f"{s['s_star']:.6g}", outcome)
    else:
        table = Table("η", "β", "s*", "eigenvalues of WWᵀ (final, min … max)", "max |s/s* − 1|", "cos(W_a, W)",
                      "collapsed modes",
                      title=f"{results[0].config.params.form}: full matrices (U1)/(U2), X = I")
        for r in results:
            s = r.summary
            err = s["max_rel_error_s_star"]
            collapsed = _diverged(s["diverged_by_t"]) if s["diverged"] else f"{s['collapsed_modes']}/{r.config.dim}"
            table.add_row(f"{r.config.params.eta:g}", f"{r.config.params.beta:g}", f"{s['s_star']:.4g}",
                          f"{min(s['final_s']):.4g} … {max(s['final_s']):.4g}", "-" if err is None else f"{err:.3g}",
                          f"{s['final_corr_Wa_W']:.4f}",
                          collapsed)
    console.print(table)


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, str):
        return v
    return f"{v:.4g}"


COMMANDS = {"phase-portrait": phase_portrait, "fixed-points": fixed_points_cmd, "simulate": simulate}
"""The command-line face of each entry of :data:`ssltheory.theory.outputs.COMMANDS` (its flags, tables, progress)."""
