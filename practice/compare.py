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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssltheory.theory import integrate, modes
from ssltheory.theory.fixed_points import parabola_offset_decay
from ssltheory.theory.params import ConfigError, ModeParams

from .config import TrainConfig
from .measure import leading_modes
from .rundir import RunDir

FINAL_P_TOL, TRAJECTORY_TOL = 0.05, 0.10
"""The agreement the bridge claims on synthetic linear runs: final p_j within 5%, trajectories within 10%."""

Array = np.ndarray


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


@dataclass
class Comparison:
    """Everything ``compare`` draws and writes for one run."""

    run: str
    cfg: TrainConfig
    params: ModeParams
    alpha: float
    measured: Measured
    p_pred: Array  # (K, M) at the measured times
    s_pred: Array
    tau_pred: Array
    agreement: dict
    qualitative: dict
    assumptions: list[dict] = field(default_factory=list)


def ode_constants(cfg: TrainConfig, sigma2: float) -> tuple[ModeParams, float]:
    """The ODE's ModeParams and the step size alpha (time per step) for a run's settings (table above)."""
    if cfg.predictor == "mlp":
        raise ConfigError("compare needs a linear predictor (linear|symmetric|directpred|none): the run used "
                          "--predictor mlp, which has no eigenvalues p_j")
    alpha = cfg.effective_lr / (1.0 - cfg.resolved_momentum)
    predictor = {"symmetric": "linear"}.get(cfg.predictor, cfg.predictor)
    ema = cfg.target_mode == "ema"
    beta = (1.0 - cfg.gamma_a) / alpha if ema else 1.0
    if ema and not 0.0 < beta <= 1.0:
        raise ConfigError(f"the run's EMA maps to beta = (1 - gamma_a) / alpha = {beta:g}, outside (0, 1] where the "
                          f"modes are defined: expected gamma_a in [{max(0.0, 1.0 - alpha):g}, 1)")
    params = ModeParams(alpha_p=cfg.alpha_p, eta=cfg.weight_decay, eta_p=cfg.alpha_p * cfg.pred_weight_decay,
                        sigma2=sigma2, beta=beta, ema=ema, stop_grad=cfg.stop_grad, predictor=predictor,
                        eps=cfg.eps if predictor == "directpred" else 0.0)
    return params, alpha


def measured_modes(records: list[dict], alpha: float, sigma2: float, n_modes: int) -> Measured:
    """The M = ``n_modes`` leading modes (by s at the first measurement) over time, in ODE units."""
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
    m = min(n_modes, len(rows[0][skey]))
    step = np.array([r["step"] for r in rows], float)
    s = scale * np.array([r[skey][:m] for r in rows], float)
    p = np.array([r[pkey][:m] for r in rows], float)
    tau = np.array([r["tau_model"][:m] for r in rows], float) if "tau_model" in rows[0] else None
    align_rows = [r for r in records if "alignment" in r]
    if align_rows:
        s_last = np.asarray(align_rows[-1]["s"])
        k = max(1, int(np.sum(leading_modes(s_last))))
        alignment = np.array([r["alignment"][:k] for r in align_rows], float)
        t_align = alpha * np.array([r["step"] for r in align_rows], float)
    else:
        alignment = t_align = None
    return Measured(alpha * step, step, p, s, tau, alignment, t_align, source)


def predict(params: ModeParams, meas: Measured) -> tuple[Array, Array, Array]:
    """Integrate the modes from the first measurement; returns (p, s, tau), each (K, M), at the measured times."""
    p0, s0 = meas.p[0], meas.s[0]
    tau0 = meas.tau[0] if meas.tau is not None and params.tau_dynamic else modes.initial_tau(params, 1.0, p0.shape)
    y0 = modes.pack(p0, s0, tau0)
    t_rel = meas.t - meas.t[0]
    tr = integrate.ode(modes.mode_field(params), y0, float(t_rel[-1]), method="RK45", samples=2000,
                       rtol=1e-8, atol=1e-11)
    out = [np.stack([np.interp(t_rel, tr.t, tr.y[:, c, j]) for j in range(p0.size)], axis=1) for c in range(3)]
    p_eff = modes.effective_p(out[0], out[1], params)
    return p_eff, out[1], out[2]


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
        ("isotropic data and augmentation (X = I, X' = sigma^2 I)", cfg.dataset == "synthetic",
         "synthetic Gaussian data" if cfg.dataset == "synthetic" else
         f"{cfg.dataset} images: sigma^2 is an assumed constant, X is not isotropic"),
        ("constant learning rate", cfg.lr_schedule == "constant", cfg.lr_schedule),
    ]
    if meas.alignment is not None:
        a0 = float(np.mean(meas.alignment[0]))
        rows.append(("W_p aligned with F (decoupled modes)", a0 > 0.9,
                     f"mean alignment of F̂'s leading modes {a0:.2f} at the first measurement"))
    return [{"assumption": a, "holds": bool(h), "why": w} for a, h, w in rows]


def compare_run(run_dir: Path, n_modes: int = 8, sigma2: float | None = None) -> Comparison:
    """Read ``run_dir`` (config.json, metrics.jsonl), predict its modes and score the agreement."""
    folder = RunDir(run_dir)
    cfg = folder.config()
    sig2 = cfg.sigma2 if sigma2 is None and cfg.dataset == "synthetic" else (0.5 if sigma2 is None else sigma2)
    params, alpha = ode_constants(cfg, sig2)
    meas = measured_modes(folder.records(), alpha, sig2, n_modes)
    p_pred, s_pred, tau_pred = predict(params, meas)
    agree = {"p": agreement(meas.p, p_pred, floor=0.1), "s": agreement(meas.s, s_pred)}
    agree["within_claim"] = bool(agree["p"]["max_final_rel_err"] <= FINAL_P_TOL
                                 and agree["p"]["max_trajectory_rel_err"] <= TRAJECTORY_TOL
                                 and agree["s"]["max_trajectory_rel_err"] <= TRAJECTORY_TOL)
    return Comparison(str(run_dir), cfg, params, alpha, meas, p_pred, s_pred, tau_pred, agree,
                      qualitative(params, meas), assumptions(cfg, meas))


def to_json(c: Comparison) -> dict:
    """The numbers beside the figure: mapping, assumptions, agreement and the per-mode series."""
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
