"""Figures of the unified gradient forms of UniGrad (:mod:`.unified`): the flow of one mode (U3) and s* against
eta, the (s_j, tau_j) phase portrait, trajectories of the modes and of the full matrices, and every form beside
BYOL. Colours as in :mod:`.plots` (red = stable, green = unstable, black = saddle)."""

from __future__ import annotations

from .io import use_file_backend

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .plots import KIND_COLOR, mode_colors  # noqa: E402
from .simulate import SimulationResult  # noqa: E402


def _unified_label(a) -> str:
    """Short mathtext label of a unified form's constants."""
    bal = rf"1/T={a.balance:g}" if a.form == "simclr" else rf"$\lambda$={a.lam:g}"
    branch = f", F {a.f_branch}" if a.form != "barlowtwins" else ""
    target = rf"EMA $\beta$={a.beta:g}" if a.ema else "stop-grad"
    return rf"{a.form}{branch}: {bal}, $\sigma^2$={a.sigma2:g}, {target}"


def unified_flow_figure(params_list: list) -> Figure:
    """A unified form's (U3) at tau = 1 (its whitened point's): s_j' against s_j, one curve per eta, fixed points
    coloured by kind (the collapsed one's kind is of the 2-D flow, at its own tau0* under EMA); and s* against eta
    with the collapse at eta = 1 and the etas given."""
    from .unified import fixed_points as unified_points
    from .unified import mode_rates as unified_rates

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    s_hi = 1.6 * max(max(a.s_star for a in params_list), 1.0 / (params_list[0].balance * params_list[0].kappa))
    s = np.linspace(0.0, s_hi, 300)
    colors = mode_colors(len(params_list))
    for a, c in zip(params_list, colors, strict=True):
        ds, _ = unified_rates(s, np.ones_like(s), a)
        axes[0].plot(s, ds, color=c, lw=1.6, label=rf"$\eta$={a.eta:g}")
        for fp in unified_points(a):
            axes[0].plot(fp.s, 0.0, "o", ms=9, color=KIND_COLOR.get(fp.kind, "tab:gray"), mec="white", zorder=5)
    axes[0].axhline(0.0, color="0.4", lw=0.8)
    axes[0].set_xlabel(r"$s_j$ (eigenvalue of $WW^T$)")
    axes[0].set_ylabel(r"$\dot s_j$ at $\tau$ = 1")
    kinds = sorted({fp.kind for a in params_list for fp in unified_points(a)})
    handles, _ = axes[0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], ls="", marker="o", ms=8, color=KIND_COLOR.get(k, "tab:gray"), mec="white",
                           label=k) for k in kinds]
    axes[0].legend(handles=handles, fontsize=8)
    axes[0].set_title("(U3) at $\\tau$ = 1; fixed points by kind", fontsize=10)
    base = params_list[0]
    etas = np.linspace(0.0, max(1.2, 1.1 * max(a.eta for a in params_list)), 300)
    axes[1].plot(etas, np.maximum(1.0 - etas, 0.0) / (base.balance * base.kappa), color="tab:red", lw=1.8,
                 label=r"$s^* = (1-\eta)/(\lambda\kappa)$ (stable)")
    axes[1].axvline(1.0, color="k", ls="--", lw=1, label=r"collapse: $\eta \geq 1$")
    for a, c in zip(params_list, colors, strict=True):
        axes[1].plot(a.eta, a.s_star, "o", ms=8, color=c, mec="white", zorder=5)
    axes[1].set_xlabel(r"weight decay $\eta$")
    axes[1].set_ylabel(r"$s^*$")
    axes[1].set_title(r"the whitened fixed point against $\eta$", fontsize=10)
    axes[1].legend(fontsize=8)
    fig.suptitle("Unified gradient in the linear model: " + _unified_label(base), fontsize=11)
    fig.tight_layout()
    return fig


def unified_window(params, s_max: float = 0.0) -> tuple[tuple[float, float], tuple[float, float]]:
    """((s_lo, s_hi), (tau_lo, tau_hi)) showing a unified form's fixed points (and s up to ``s_max``)."""
    from .unified import collapsed_tau

    s_hi = 1.6 * max(params.s_star, 1.0 / (params.balance * params.kappa), s_max)
    return (0.0, s_hi), (0.0, max(1.6, 1.2 * collapsed_tau(params)))


def draw_unified_portrait(ax, params, window=None, density: float = 1.0) -> list:
    """The flow of one mode of a unified form on ``ax``: under EMA the (s_j, tau_j) plane of (U3)-(U4) with
    streamlines, under stop-gradient (tau = 1) s_j' against s_j; fixed points coloured by kind. Returns them."""
    from .unified import fixed_points as unified_points
    from .unified import mode_rates as unified_rates

    (s_lo, s_hi), (t_lo, t_hi) = window or unified_window(params)
    fps = unified_points(params)
    if params.ema:
        S, T = np.meshgrid(np.linspace(s_lo, s_hi, 50), np.linspace(t_lo, t_hi, 50))
        with np.errstate(over="ignore", invalid="ignore"):
            dS, dT = unified_rates(S, T, params)
            top = float(np.max(np.abs(np.stack([dS, dT])))) if np.all(np.isfinite(dS) & np.isfinite(dT)) else 0.0
        if top > 0:
            ax.streamplot(S, T, dS / top, dT / top, density=density, color="tab:blue", linewidth=0.7, arrowsize=0.8)
        for fp in fps:
            ax.plot(fp.s, fp.tau, "o", ms=9, color=KIND_COLOR.get(fp.kind, "tab:gray"), mec="white", zorder=5)
            ax.annotate(f"{fp.kind} ({fp.s:.3g}, {fp.tau:.3g})", (fp.s, fp.tau), textcoords="offset points",
                        xytext=(6, 6), fontsize=7, color=KIND_COLOR.get(fp.kind, "tab:gray"))
        ax.set_ylim(t_lo, t_hi)
        ax.set_ylabel(r"$\tau_j$")
    else:
        s = np.linspace(s_lo, s_hi, 300)
        ax.plot(s, unified_rates(s, np.ones_like(s), params)[0], color="tab:blue", lw=1.6)
        ax.axhline(0.0, color="0.4", lw=0.8)
        for fp in fps:
            ax.plot(fp.s, 0.0, "o", ms=9, color=KIND_COLOR.get(fp.kind, "tab:gray"), mec="white", zorder=5)
            ax.annotate(f"{fp.kind} {fp.s:.3g}", (fp.s, 0.0), textcoords="offset points", xytext=(6, 6), fontsize=7,
                        color=KIND_COLOR.get(fp.kind, "tab:gray"))
        ax.set_ylabel(r"$\dot s_j$ ($\tau$ = 1, stop-grad)")
    ax.set_xlim(s_lo, s_hi)
    ax.set_xlabel(r"$s_j$ (eigenvalue of $WW^T$)")
    ax.set_title(rf"{_unified_label(params)}, $\eta$={params.eta:g}", fontsize=9)
    return fps


def unified_portrait_figure(params_list: list) -> Figure:
    """One panel per parameter set (e.g. per eta): :func:`draw_unified_portrait` on a common window."""
    n = len(params_list)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.4), squeeze=False)
    wins = [unified_window(a) for a in params_list]
    common = ((0.0, max(w[0][1] for w in wins)), (0.0, max(w[1][1] for w in wins)))
    for ax, a in zip(axes[0], params_list, strict=True):
        draw_unified_portrait(ax, a, window=common)
    fig.suptitle("Phase portrait of one mode of the unified gradient, (U3)-(U4) (theory/unified.py)", fontsize=11)
    fig.tight_layout()
    return fig


def unified_modes_figure(results: list[SimulationResult]) -> Figure:
    """One row per run of (U3)-(U4): s_j(t) with s* dashed, and tau_j(t)."""
    n = len(results)
    fig, axes = plt.subplots(n, 2, figsize=(10, 3.3 * n), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        a, t = res.config.params, res.t
        colors = mode_colors(len(res.config.s0))
        for j, c in enumerate(colors):
            lbl = rf"$s_0$={res.config.s0[j]:g}"
            if res.summary["diverged"][j]:
                by = res.summary["diverged_by_t"][j]
                row[0].plot([], [], color=c, ls=":", label=lbl + f": diverged (t ≤ {by:.3g})")
                continue
            row[0].plot(t, res.series["s"][:, j], color=c, label=lbl)
            row[1].plot(t, res.series["tau"][:, j], color=c)
        row[0].axhline(a.s_star, ls="--", color="tab:red", lw=1, label=rf"$s^*$ = {a.s_star:.4g}")
        row[0].legend(fontsize=7, loc="best")
        row[0].set_title(r"$s_j$ (U3)" + "\n" + _unified_label(a) + rf", $\eta$={a.eta:g}, "
                         + f"α={res.config.lr:g}, {res.config.integrator}", fontsize=9)
        row[1].set_title(r"$\tau_j$ (U4)" + ("" if a.ema else ": 1 under stop-gradient"), fontsize=9)
        row[0].set_ylabel(r"$s_j$")
        row[1].set_ylabel(r"$\tau_j$")
        for ax in row:
            ax.set_xlabel("t = step × α")
    fig.tight_layout()
    return fig


def unified_matrix_figure(results: list[SimulationResult]) -> Figure:
    """One row per run of (U1)/(U2) on full matrices: the eigenvalues of W Wᵀ with s* dashed, and cos(W_a, W)."""
    n = len(results)
    fig, axes = plt.subplots(n, 2, figsize=(10, 3.3 * n), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        a, t, d = res.config.params, res.t, res.series
        for j, c in enumerate(mode_colors(d["s"].shape[1])):
            row[0].plot(t, d["s"][:, j], color=c, lw=1.2)
        row[0].axhline(a.s_star, ls="--", color="tab:red", lw=1, label=rf"$s^*$ = {a.s_star:.4g}")
        row[0].legend(fontsize=7)
        row[1].plot(t, d["corr_Wa_W"], color="tab:blue")
        row[0].set_title(r"eigenvalues of $WW^T$ ((U1)/(U2), X = I)" + "\n" + _unified_label(a)
                         + rf", $\eta$={a.eta:g}, dim={res.config.dim}", fontsize=9)
        row[1].set_title(r"cos($W_a$, $W$) (Assumption 1: $W_a = \tau W$)", fontsize=9)
        if res.summary.get("diverged"):
            row[0].text(0.5, 0.5, f"diverged (t ≤ {res.summary['diverged_by_t']:.3g})", transform=row[0].transAxes,
                        ha="center", color="tab:red", fontsize=10)
        for ax in row:
            ax.set_xlabel("t = step × α")
    fig.tight_layout()
    return fig


def unified_forms_figure(data: dict) -> Figure:
    """Every unified form's s* against eta (top left), BYOL's p*_+- of Eq. 16 on the same eta axis (bottom left),
    and the collapsed point's tau0* against beta under EMA, by stability (right); ``data`` as
    :func:`~ssltheory.theory.outputs.unified_forms` writes it."""
    fig = plt.figure(figsize=(13, 7.5))
    grid = fig.add_gridspec(2, 2, width_ratios=(1.25, 1))
    ax_s = fig.add_subplot(grid[0, 0])
    ax_p = fig.add_subplot(grid[1, 0], sharex=ax_s)
    ax_b = fig.add_subplot(grid[:, 1])
    eta = np.asarray(data["eta"])
    styles = ("-", (0, (5, 3)), ":", "-", "-.")
    widths = (3.5, 2.2, 1.6, 1.8, 1.8)
    for k, f in enumerate(data["forms"]):
        ax_s.plot(eta, f["s_star"], ls=styles[k], lw=widths[k], label=rf"{f['label']}: $\kappa$={f['kappa']:g}, "
                  + (rf"1/T={f['balance']:g}" if f["method"] == "simclr" else rf"$\lambda$={f['balance']:g}"))
    byol = data["byol"]
    thr = byol["collapse_threshold_eta"]
    for ax in (ax_s, ax_p):
        ax.axvline(1.0, color="k", ls="--", lw=1)
        ax.axvline(thr, color="tab:purple", ls=":", lw=1.2)
    ax_s.text(1.0, 0.97, r" unified: collapse at $\eta \geq 1$", transform=ax_s.get_xaxis_transform(), fontsize=8,
              va="top")
    ax_s.set_ylabel(r"whitened fixed point $s^*$ (stable)")
    ax_s.set_title(rf"$s^* = (1-\eta)/(\lambda\kappa)$ of every unified form, $\sigma^2$={data['sigma2']:g}",
                   fontsize=10)
    ax_s.legend(fontsize=7.5)
    ax_p.plot(eta, byol["p_star_plus"], color="tab:red", lw=1.8, label=r"$p^*_+$ (stable)")
    ax_p.plot(eta, byol["p_star_minus"], color="tab:green", lw=1.8, label=r"$p^*_-$ (unstable)")
    ax_p.text(thr, 0.97, rf" BYOL: collapse above $\tau^2/4(1+\sigma^2)$ = {thr:.3g}",
              transform=ax_p.get_xaxis_transform(), fontsize=8, va="top", color="tab:purple")
    ax_p.set_xlabel(r"weight decay $\eta$")
    ax_p.set_ylabel(r"predictor eigenvalue $p^*$")
    ax_p.set_title(rf"BYOL / DirectPred (Eq. 16, $\tau$={byol['tau']:g}): $p^*_\pm$ on the same $\eta$ axis",
                   fontsize=10)
    ax_p.legend(fontsize=8, loc="center right")
    beta = np.asarray(data["beta"])
    colors = mode_colors(len(data["etas"]))
    for f, ls, name in ((data["forms"][0], "-", "unigrad / vicreg / barlowtwins"),
                        (data["forms"][-1], "--", "simclr (approx.)")):
        for c, rec in zip(colors, f["collapsed_vs_beta"], strict=True):
            kinds = sorted(set(rec["kind"]))
            ax_b.plot(beta, rec["tau0"], ls=ls, color=c, lw=1.6,
                      label=rf"{name}, $\eta$={rec['eta']:g}: {'/'.join(kinds)}")
            every = slice(None, None, 11)
            ax_b.scatter(beta[every], np.asarray(rec["tau0"])[every], s=22, zorder=5, edgecolors="white",
                         c=[KIND_COLOR.get(k, "tab:gray") for k in rec["kind"][every]])
    ax_b.set_xlabel(r"EMA rate $\beta$")
    ax_b.set_ylabel(r"$\tau_0^*$ at the collapsed point $s = 0$")
    ax_b.set_title("collapsed point s = 0 under EMA: τ0* and its kind\n(dots: black saddle, red stable)",
                   fontsize=10)
    ax_b.legend(fontsize=7)
    fig.suptitle("Fixed points of the unified gradient forms vs BYOL in the linear model "
                 rf"($\lambda$={data['lambda']:g}, T={data['temperature']:g})", fontsize=12)
    fig.tight_layout()
    return fig
