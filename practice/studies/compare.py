"""The theory's prediction beside a training run's measurements: map the run's settings to the ODE's constants,
integrate the decoupled modes (Eqs. 11-13) from the measured initial values, and score the agreement.

Mapping (our trainer uses torch SGD, whose weight decay is coupled to the learning rate: one step is
w <- w - lr (g + wd w) + momentum; see ``ode_constants``):

- time t = step * alpha, alpha = lr / (1 - momentum): momentum mu scales the long-run step by 1 / (1 - mu);
- eta = weight_decay. The paper's eta_bar = alpha eta holds for a decay applied as a per-step shrink; torch's
  coupled decay shrinks by lr * wd per step, which is eta = wd in units of t (the synthetic test separates the two);
- eta_p = alpha_p * predictor weight decay (torch multiplies the decay by the predictor group's lr, alpha_p * lr);
- alpha_p = the predictor's learning-rate ratio; beta = (1 - gamma_a) / alpha (EMA once per step);
- sigma^2: the synthetic data's; for images an assumption (``--sigma2``);
- s_j, p_j: for the linear model exact, from the weights (F = W W^T, p_j = u_j^T W_p u_j, and tau_j); otherwise the
  eigenvalues of the running correlation F̂ divided by 1 + sigma^2 (F̂ sees both augmented views,
  F̂ = W (X + X') W^T) and u_j^T W_p u_j.

The unified-gradient forms of the linear model (``--method unigrad``, ``vicreg --form unified``, ``barlowtwins
--form unified``, raw outputs ``--norm none``) map to :class:`~ssltheory.theory.unified.UnifiedParams` and the mode
flow (U3)-(U4): the same time, eta and beta, lam = the run's lambda, F from the momentum branch unless the negatives
are the online network's (``--negative-target stop-grad``: f_branch online). The released Barlow Twins gradient
carries a factor 2 (:data:`GRADIENT_SCALE`): its time runs 2 alpha per step and eta = wd / 2. There is no predictor
(p_j = 1); the modes compared are spread over W's spectrum (every mode goes to the same s*), not the leading ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.registry import DATASETS
from ssltheory.practice.engine.rundir import RunDir
from ssltheory.practice.measure.quantities import leading_modes
from ssltheory.theory import integrate, modes, unified
from ssltheory.theory.checks import ConfigError
from ssltheory.theory.fixed_points import parabola_offset_decay
from ssltheory.theory.params import ModeParams
from ssltheory.theory.unified import UnifiedParams

FINAL_P_TOL, TRAJECTORY_TOL = 0.05, 0.10
"""The agreement the bridge claims on synthetic linear runs: final p_j within 5%, trajectories within 10%."""

Array = np.ndarray

REGRESSION = ("byol", "simsiam")
"""Methods the BYOL/SimSiam modes (Eqs. 11-13) describe."""
UNIFIED = {"unigrad": ("gradient", "loss"), "vicreg": ("unified",), "barlowtwins": ("unified",)}
"""Methods (and their forms) whose linear-model flow :mod:`ssltheory.theory.unified` gives (same name as its form)."""
GRADIENT_SCALE = {"barlowtwins": 2.0}
"""The factor the released gradient carries over the theory's (Barlow Twins' 2 (-t + lam C t)); 1 otherwise."""


@dataclass
class Measured:
    """A run's measured modes: times t (K,), p and s (K, M) for the M selected modes, tau (K, M) or None."""

    t: Array
    step: Array
    p: Array
    s: Array
    tau: Array | None
    alignment: Array | None  # (K', M') cos(u_j, W_p u_j) of F̂'s leading modes, at times t_align
    t_align: Array | None
    source: str
    ranks: Array | None = None  # the selected ranks of the sorted spectrum (None: the leading M)
    spectrum: tuple[Array, Array] | None = None  # (s, tau) of every mode at the first measurement (linear model)


@dataclass
class Comparison:
    """Everything ``compare`` draws and writes for one run."""

    run: str
    cfg: TrainConfig
    params: ModeParams | UnifiedParams
    alpha: float
    measured: Measured
    p_pred: Array  # (K, M) at the measured times
    s_pred: Array
    tau_pred: Array
    agreement: dict
    qualitative: dict
    assumptions: list[dict] = field(default_factory=list)


def _covered(cfg: TrainConfig) -> None:
    """Raise ConfigError unless a theory describes the run's method and form."""
    if cfg.method in REGRESSION or cfg.resolved_form in UNIFIED.get(cfg.method, ()):
        return
    covered = ", ".join([*REGRESSION, *(f"{m} --form {'|'.join(f)}" for m, f in UNIFIED.items())])
    raise ConfigError(f"--method {cfg.method} --form {cfg.resolved_form}: no theory in this package describes it; "
                      f"compare covers {covered}")


def unified_constants(cfg: TrainConfig, sigma2: float) -> tuple[UnifiedParams, float]:
    """The unified flow's constants and alpha (time per step) for a unified-form run (module docstring)."""
    c = GRADIENT_SCALE.get(cfg.method, 1.0)
    alpha = c * cfg.resolved_lr / (1.0 - cfg.resolved_momentum)
    ema = cfg.resolved_positive_target == "ema"
    beta = (1.0 - cfg.gamma_a) / alpha if ema else 0.0
    if ema and not 0.0 < beta <= 1.0:
        raise ConfigError(f"the run's EMA maps to beta = (1 - gamma_a) / alpha = {beta:g}, outside (0, 1] where the "
                          f"modes are defined: expected gamma_a in [{max(0.0, 1.0 - alpha):g}, 1)")
    f_branch = "online" if ema and cfg.resolved_negative_target == "stop-grad" else "momentum"
    if cfg.method == "barlowtwins" and f_branch == "online":
        raise ConfigError("barlowtwins with --positive-target ema --negative-target stop-grad: (U2) takes C from the "
                          "target branch; expected the same branch for both")
    params = UnifiedParams(form=cfg.method, lam=float(cfg.resolved_lam), eta=cfg.weight_decay / c, sigma2=sigma2,
                           beta=beta, ema=ema, f_branch=f_branch)
    return params, alpha


def ode_constants(cfg: TrainConfig, sigma2: float) -> tuple[ModeParams, float]:
    """The ODE's ModeParams and the step size alpha (time per step) for a run's settings (table above)."""
    if cfg.predictor == "mlp":
        raise ConfigError("compare needs a linear predictor (linear|symmetric|directpred|none): the run used "
                          "--predictor mlp, which has no eigenvalues p_j")
    alpha = cfg.resolved_lr / (1.0 - cfg.resolved_momentum)
    predictor = {"symmetric": "linear"}.get(cfg.predictor, cfg.predictor)
    ema = cfg.resolved_positive_target == "ema"
    beta = (1.0 - cfg.gamma_a) / alpha if ema else 1.0
    if ema and not 0.0 < beta <= 1.0:
        raise ConfigError(f"the run's EMA maps to beta = (1 - gamma_a) / alpha = {beta:g}, outside (0, 1] where the "
                          f"modes are defined: expected gamma_a in [{max(0.0, 1.0 - alpha):g}, 1)")
    eta_p = cfg.alpha_p * cfg.resolved_predictor_weight_decay
    params = ModeParams(alpha_p=cfg.alpha_p, eta=cfg.weight_decay, eta_p=eta_p, sigma2=sigma2, beta=beta, ema=ema,
                        stop_grad=cfg.stop_grad, predictor=predictor, eps=cfg.eps if predictor == "directpred" else 0.0)
    return params, alpha


def measured_modes(records: list[dict], alpha: float, sigma2: float, n_modes: int, spread: bool = False
                   ) -> Measured:
    """The M = ``n_modes`` leading modes (by s at the first measurement) over time, in ODE units; ``spread``: M modes
    evenly spaced over the spectrum of the linear model instead (the whitening forms move every mode to one s*)."""
    exact = [r for r in records if "s_model" in r]
    if exact:
        rows, skey, pkey, source = exact, "s_model", "p_model", "exact, from the weights (linear model)"
        scale = 1.0
    else:
        rows = [r for r in records if "s" in r and "p_along_F" in r]
        skey, pkey, source = "s", "p_along_F", "eigenvalues of F̂ / (1 + sigma^2) and u_j^T W_p u_j"
        scale = 1.0 / (1.0 + sigma2)
    if len(rows) < 2:
        raise ConfigError("the run has fewer than 2 measurements of F̂ and W_p in metrics.jsonl: expected a run "
                          "with a linear predictor trained for more than --measure-every steps")
    n = len(rows[0][skey])
    m = min(n_modes, n)
    idx = np.unique(np.linspace(0, n - 1, m).round().astype(int)) if spread and exact else np.arange(m)
    step = np.array([r["step"] for r in rows], float)
    s = scale * np.array([r[skey] for r in rows], float)[:, idx]
    p = np.array([r[pkey] for r in rows], float)[:, idx]
    tau = np.array([r["tau_model"] for r in rows], float)[:, idx] if "tau_model" in rows[0] else None
    align_rows = [r for r in records if "alignment" in r]
    if align_rows:
        s_last = np.asarray(align_rows[-1]["s"])
        k = max(1, int(np.sum(leading_modes(s_last))))
        alignment = np.array([r["alignment"][:k] for r in align_rows], float)
        t_align = alpha * np.array([r["step"] for r in align_rows], float)
    else:
        alignment = t_align = None
    spectrum = None
    if exact:
        s_all = np.asarray(rows[0][skey], float)
        spectrum = (s_all, np.asarray(rows[0]["tau_model"], float) if "tau_model" in rows[0] else np.ones_like(s_all))
    return Measured(alpha * step, step, p, s, tau, alignment, t_align, source, idx, spectrum)


def start_state(params: ModeParams, meas: Measured) -> Array:
    """The modes' packed state (3, M) at the first measurement, where the ODE starts: its p_j and s_j, and its tau_j
    when tau follows Eq. 13 and the run measured it, else tau's initial value under ``params`` (1 for SimSiam)."""
    p0, s0 = meas.p[0], meas.s[0]
    tau0 = meas.tau[0] if meas.tau is not None and params.tau_dynamic else modes.initial_tau(params, 1.0, p0.shape)
    return modes.pack(p0, s0, tau0)


def predict(params: ModeParams, meas: Measured) -> tuple[Array, Array, Array]:
    """Integrate the modes from the first measurement; returns (p, s, tau), each (K, M), at the measured times."""
    y0 = start_state(params, meas)
    t_rel = meas.t - meas.t[0]
    tr = integrate.ode(modes.mode_field(params), y0, float(t_rel[-1]), method="RK45", samples=2000,
                       rtol=1e-8, atol=1e-11)
    out = [np.stack([np.interp(t_rel, tr.t, tr.y[:, c, j]) for j in range(y0.shape[1])], axis=1)
           for c in range(3)]
    p_eff = modes.effective_p(out[0], out[1], params)
    return p_eff, out[1], out[2]


def predict_unified(params: UnifiedParams, meas: Measured) -> tuple[Array, Array, Array]:
    """Integrate (U3)-(U4) for every mode of the first measurement's spectrum (``meas.spectrum``, else the selected
    modes); returns (p = 1, s, tau), each (K, M), at the measured times, for the selected ranks of the spectrum.

    Under EMA a mode's (s, tau) path can overtake another's in s (a fast-shrinking mode undershoots s* while tau
    catches up), while a run's records hold the eigenvalues sorted: so the predicted spectrum is sorted at every time
    too (tau carried with its s) and rank j is compared with rank j."""
    s0, tau0 = meas.spectrum if meas.spectrum is not None else (meas.s[0], meas.tau[0] if meas.tau is not None
                                                                 else np.ones_like(meas.s[0]))
    tau0 = tau0 if params.ema else np.ones_like(s0)
    t_rel = meas.t - meas.t[0]
    tr = integrate.ode(unified.mode_field(params), np.stack([s0, tau0], axis=-1), float(t_rel[-1]), method="RK45",
                       samples=2000, rtol=1e-8, atol=1e-11)
    s, tau = (np.stack([np.interp(t_rel, tr.t, tr.y[:, j, c]) for j in range(s0.size)], axis=1) for c in (0, 1))
    order = np.argsort(-s, axis=1, kind="stable")
    s, tau = np.take_along_axis(s, order, 1), np.take_along_axis(tau, order, 1)
    idx = meas.ranks if meas.ranks is not None else np.arange(meas.s.shape[1])
    return np.ones_like(s[:, idx]), s[:, idx], tau[:, idx]


def agreement(measured: Array, predicted: Array, floor: float = 0.0) -> dict:
    """Per-mode relative errors: of the final value, and the largest error along the trajectory over its range.

    ``floor``: the final value's scale is at least ``floor`` times the largest mode's (p_j can pass through 0).
    """
    denom = np.maximum(np.abs(measured[-1]), floor * np.max(np.abs(measured[-1])))
    final = np.abs(predicted[-1] - measured[-1]) / np.maximum(denom, 1e-12)
    scale = np.maximum(np.max(np.abs(measured), axis=0), 1e-12)
    traj = np.max(np.abs(predicted - measured), axis=0) / scale
    return {"final_rel_err": final.tolist(), "trajectory_rel_err": traj.tolist(),
            "max_final_rel_err": float(final.max()), "max_trajectory_rel_err": float(traj.max())}


def qualitative(params: ModeParams, meas: Measured) -> dict:
    """What holds without a quantitative match: alignment, and s_j against p_j^2 / alpha_p at the end."""
    p, s = meas.p[-1], meas.s[-1]
    pos = (p > 0) & (s > 0)
    out: dict = {"offset_left": float(parabola_offset_decay(1.0, params.eta, meas.t[-1] - meas.t[0]))}
    if pos.sum() >= 3:
        x, y = np.log(p[pos] ** 2), np.log(s[pos])
        slope, _ = np.polyfit(x, y, 1)
        out.update(log_s_vs_log_p2_slope=float(slope), log_s_vs_log_p2_corr=float(np.corrcoef(x, y)[0, 1]),
                   s_over_parabola_median=float(np.median(s[pos] * params.alpha_p / p[pos] ** 2)))
    if meas.alignment is not None:
        out.update(alignment_start=float(np.mean(meas.alignment[0])), alignment_end=float(np.mean(meas.alignment[-1])))
    return out


def assumptions(cfg: TrainConfig, meas: Measured) -> list[dict]:
    """The theory's assumptions and whether this run meets them, each with a plain sentence."""
    linear = cfg.resolved_backbone == "linear"
    rows = [
        ("two-layer linear network", linear, "W then W_p" if linear else
         f"a {cfg.resolved_backbone} with a projector: the modes describe only the last, linear step"),
        ("L2 loss of Eq. 1", cfg.resolved_loss == "l2", "as trained" if cfg.resolved_loss == "l2" else
         "the run used the negative cosine, which ignores the scale of W_p and f; absolute s_j, p_j do not map"),
        ("plain gradient flow", cfg.resolved_momentum == 0.0,
         "momentum 0" if cfg.resolved_momentum == 0.0 else
         f"momentum {cfg.resolved_momentum:g}: mapped to the step alpha = lr / (1 - momentum), exact only for slow "
         "dynamics"),
        ("isotropic data and augmentation (X = I, X' = sigma^2 I)", DATASETS[cfg.dataset].linear,
         "the theory's Gaussian data" if DATASETS[cfg.dataset].linear else
         f"{cfg.dataset} images: sigma^2 is an assumed constant, X is not isotropic"),
        ("constant learning rate", cfg.lr_schedule == "constant", cfg.lr_schedule),
    ]
    if meas.alignment is not None:
        a0 = float(np.mean(meas.alignment[0]))
        rows.append(("W_p aligned with F (decoupled modes)", a0 > 0.9,
                     f"mean alignment of F̂'s leading modes {a0:.2f} at the first measurement"))
    return [{"assumption": a, "holds": bool(h), "why": w} for a, h, w in rows]


def unified_assumptions(cfg: TrainConfig, params: UnifiedParams) -> list[dict]:
    """The unified flow's assumptions (:mod:`ssltheory.theory.unified`) and whether this run meets them."""
    linear = cfg.resolved_backbone == "linear"
    raw = cfg.resolved_norm == "none"
    steps_per_time = 1.0 / (GRADIENT_SCALE.get(cfg.method, 1.0) * cfg.resolved_lr)
    rows = [
        ("one linear layer f = W x, no predictor", linear, "W" if linear else
         f"a {cfg.resolved_backbone} with a projector: the modes describe only the last, linear step"),
        ("raw outputs (no normalisation)", raw, "--norm none" if raw else
         f"--norm {cfg.resolved_norm}: the theory's quadratic flow does not hold on normalised outputs"),
        ("plain gradient flow", cfg.resolved_momentum == 0.0,
         "momentum 0" if cfg.resolved_momentum == 0.0 else f"momentum {cfg.resolved_momentum:g}"),
        ("isotropic data and augmentation (X = I, X' = (1 + sigma^2) I)", DATASETS[cfg.dataset].linear,
         "the theory's Gaussian data" if DATASETS[cfg.dataset].linear else f"{cfg.dataset} images"),
        ("constant learning rate", cfg.lr_schedule == "constant", cfg.lr_schedule),
    ]
    if cfg.method == "unigrad":
        rows.append(("F is the expectation over the current weights", cfg.f_rho == 0.0,
                     "--f-rho 0: F is each batch's own" if cfg.f_rho == 0.0 else
                     f"--f-rho {cfg.f_rho:g}: F averages the last ~{1 / (1 - cfg.f_rho):.0f} steps "
                     f"(~{1 / ((1 - cfg.f_rho) * steps_per_time):.2g} time units), so it lags a moving W"))
    return [{"assumption": a, "holds": bool(h), "why": w} for a, h, w in rows]


def compare_run(run_dir: Path, n_modes: int = 8, sigma2: float | None = None) -> Comparison:
    """Read ``run_dir`` (config.json, metrics.jsonl), predict its modes and score the agreement.

    ``n_modes``: M, how many modes are compared (F̂'s leading ones; spread over the spectrum for a unified form);
    ``sigma2``: the augmentation variance the ODE assumes (default: the synthetic data's own, 0.5 for images).
    The :class:`Comparison` holds ``alpha`` (ODE time per step, lr / (1 - momentum)), the ODE's constants
    (``params``), the measured modes (``measured.t`` (K,) ODE time, ``measured.step`` (K,), ``measured.p``,
    ``measured.s`` (K, M), ``measured.tau`` (K, M) or None), the prediction at the same times (``p_pred``,
    ``s_pred``, ``tau_pred``, (K, M)), ``agreement`` (per-mode relative errors of the final values and of the
    trajectories, and ``within_claim``), ``qualitative`` and ``assumptions`` (each with whether the run meets it).
    A run whose method no theory here describes is a one-line :class:`ConfigError`."""
    folder = RunDir(run_dir)
    cfg = folder.config()
    _covered(cfg)
    sig2 = cfg.sigma2 if sigma2 is None and DATASETS[cfg.dataset].linear else (0.5 if sigma2 is None else sigma2)
    if cfg.method in UNIFIED:
        return _compare_unified(run_dir, folder, cfg, n_modes, sig2)
    params, alpha = ode_constants(cfg, sig2)
    meas = measured_modes(folder.records(), alpha, sig2, n_modes)
    p_pred, s_pred, tau_pred = predict(params, meas)
    agree = {"p": agreement(meas.p, p_pred, floor=0.1), "s": agreement(meas.s, s_pred)}
    agree["within_claim"] = bool(agree["p"]["max_final_rel_err"] <= FINAL_P_TOL
                                 and agree["p"]["max_trajectory_rel_err"] <= TRAJECTORY_TOL
                                 and agree["s"]["max_trajectory_rel_err"] <= TRAJECTORY_TOL)
    return Comparison(str(run_dir), cfg, params, alpha, meas, p_pred, s_pred, tau_pred, agree,
                      qualitative(params, meas), assumptions(cfg, meas))


def _compare_unified(run_dir: Path, folder: RunDir, cfg: TrainConfig, n_modes: int, sigma2: float) -> Comparison:
    params, alpha = unified_constants(cfg, sigma2)
    meas = measured_modes(folder.records(), alpha, sigma2, n_modes, spread=True)
    p_pred, s_pred, tau_pred = predict_unified(params, meas)
    agree = {"s": agreement(meas.s, s_pred)}
    if meas.tau is not None and params.ema:
        agree["tau"] = agreement(meas.tau, tau_pred)
    # the claim is on s_j; tau_j is reported beside it: ranks of s swap where two modes' (s, tau) paths cross, and a
    # rank's tau then jumps between the two modes' (which differ), so tau by rank is not a well-posed trajectory
    agree["within_claim"] = bool(agree["s"]["max_final_rel_err"] <= FINAL_P_TOL
                                 and agree["s"]["max_trajectory_rel_err"] <= TRAJECTORY_TOL)
    qual = {"s_star": params.s_star, "s_final_over_s_star_median": float(np.median(meas.s[-1]) / params.s_star)
            if params.s_star > 0 else None,
            "s_final_spread": float((meas.s[-1].max() - meas.s[-1].min()) / max(meas.s[-1].max(), 1e-12))}
    return Comparison(str(run_dir), cfg, params, alpha, meas, p_pred, s_pred, tau_pred, agree, qual,
                      unified_assumptions(cfg, params))


def _unified_json(c: Comparison) -> dict:
    a = c.params
    return {
        "run": c.run, "modes_source": c.measured.source, "theory": "ssltheory.theory.unified (U3)-(U4)",
        "ode_constants": {"alpha (time per step)": c.alpha, "form": a.form, "lambda": a.lam, "eta": a.eta,
                          "beta": a.beta if a.ema else None, "sigma2": a.sigma2, "ema": a.ema,
                          "f_branch": a.f_branch, "kappa": a.kappa, "q": a.q, "s_star": a.s_star},
        "assumptions": c.assumptions,
        "agreement": {**c.agreement, "claim": f"final s_j within {FINAL_P_TOL:.0%}, trajectories of s_j within "
                                              f"{TRAJECTORY_TOL:.0%} of their range (tau_j reported, not claimed)"},
        "qualitative": c.qualitative,
        "series": {"t": c.measured.t.tolist(), "step": c.measured.step.tolist(), "s": c.measured.s.tolist(),
                   "s_pred": c.s_pred.tolist(), "tau": None if c.measured.tau is None else c.measured.tau.tolist(),
                   "tau_pred": c.tau_pred.tolist()},
    }


def to_json(c: Comparison) -> dict:
    """The numbers beside the figure: mapping, assumptions, agreement and the per-mode series."""
    if isinstance(c.params, UnifiedParams):
        return _unified_json(c)
    a = c.params
    return {
        "run": c.run, "modes_source": c.measured.source,
        "ode_constants": {"alpha (time per step)": c.alpha, "eta": a.eta, "eta_p": a.eta_pred, "alpha_p": a.alpha_p,
                          "beta": a.beta if a.ema else None, "sigma2": a.sigma2, "ema": a.ema,
                          "stop_grad": a.stop_grad, "predictor": a.predictor},
        "assumptions": c.assumptions,
        "agreement": {**c.agreement, "claim": f"final p_j within {FINAL_P_TOL:.0%}, trajectories of p_j and s_j "
                                              f"within {TRAJECTORY_TOL:.0%} of their range"},
        "qualitative": c.qualitative,
        "series": {"t": c.measured.t.tolist(), "step": c.measured.step.tolist(), "p": c.measured.p.tolist(),
                   "p_pred": c.p_pred.tolist(), "s": c.measured.s.tolist(), "s_pred": c.s_pred.tolist(),
                   "tau_pred": c.tau_pred.tolist()},
    }
