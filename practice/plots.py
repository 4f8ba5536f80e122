"""Figures of a training run, drawn from its ``metrics.jsonl`` (the paper's Fig. 2 quantities and the monitors)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .measure import leading_modes  # noqa: E402


def run_title(cfg) -> str:
    """The figure title of a run: dataset, method, predictor and the knobs of the theory (gamma_a only for an EMA
    target)."""
    ema = f", γ_a={cfg.gamma_a:g}" if cfg.target_mode == "ema" else ""
    return (f"{cfg.dataset}, {cfg.method}, predictor={cfg.predictor}, lr={cfg.lr:g}, wd={cfg.weight_decay:g}, "
            f"α_p={cfg.alpha_p:g}{ema}")


def run_figure(records: list[dict], title: str = "") -> Figure:
    """2 x 3 panels: log s_j of F̂, eigenvalues of sym(W_p), alignment, asymmetry, collapse AUC / k_eq, kNN."""
    meas = [r for r in records if "s" in r]
    knn = [r for r in records if "knn_acc" in r]
    fig, ax = plt.subplots(2, 3, figsize=(16, 8.5))
    if meas:
        t = np.array([r["epoch"] for r in meas])
        s = np.array([r["s"] for r in meas])
        ax[0, 0].semilogy(t, np.maximum(s, 1e-12), lw=0.8)
        ax[0, 0].set_title(r"eigenvalues $s_j$ of $\hat F$ (log)")
        if "p_sym" in meas[0]:
            ax[0, 1].plot(t, np.array([r["p_sym"] for r in meas]), lw=0.8)
            align = np.array([r["alignment"] for r in meas])
            top = leading_modes(s[-1])
            ax[0, 2].plot(t, align[:, top], lw=0.8)
            ax[0, 2].set_ylim(-1.05, 1.05)
            ax[1, 0].plot(t, [r["asymmetry"] for r in meas], color="tab:purple", label="whole $W_p$")
            if "asymmetry_top" in meas[0]:
                ax[1, 0].plot(t, [r["asymmetry_top"] for r in meas], color="tab:orange",
                              label=r"within the leading modes of $\hat F$")
            ax[1, 0].legend(fontsize=8)
        for a, msg in ((ax[0, 1], r"eigenvalues of sym($W_p$)"),
                       (ax[0, 2], r"alignment cos($u_j$, $W_p u_j$), modes with $s_j > 10^{-3} s_1$"),
                       (ax[1, 0], r"asymmetry $\|W_p - W_p^T\|_F / \|W_p\|_F$")):
            a.set_title(msg, fontsize=10)
            if "p_sym" not in meas[0]:
                a.text(0.5, 0.5, "no linear W_p (mlp predictor)", ha="center", transform=a.transAxes)
        ax[1, 1].plot(t, [r["auc"] for r in meas], color="tab:red", label="AUC")
        ax[1, 1].set_ylabel("collapse AUC (1 = rank one)")
        tw = ax[1, 1].twinx()
        tw.plot(t, [r["k_eq"] for r in meas], color="tab:blue", ls="--", label=r"$k_{eq}$")
        tw.set_ylabel(r"$k_{eq} = 1 + 2d(1 - AUC)$")
        ax[1, 1].set_title("collapse metric of backbone features (Li et al.)", fontsize=10)
    if knn:
        ax[1, 2].plot([r["epoch"] for r in knn], [100 * r["knn_acc"] for r in knn], "o-", color="tab:green")
        ax[1, 2].set_ylabel("kNN top-1 (%)")
        ax[1, 2].set_title("kNN accuracy (k = 200, T = 0.1)", fontsize=10)
    else:
        ax[1, 2].text(0.5, 0.5, "no labels: no kNN", ha="center", transform=ax[1, 2].transAxes)
    for a in ax.ravel():
        a.set_xlabel("epoch")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def compare_figure(comparisons: list) -> Figure:
    """One row per run: p_j(t) and s_j(t) measured (solid) vs predicted (dashed), the measured (p_j, s_j) paths on
    the phase portrait at the run's final mean tau, and the alignment of W_p with F̂ over time."""
    from ssltheory.theory.plots import draw_phase_portrait, param_label

    n = len(comparisons)
    fig, ax = plt.subplots(n, 4, figsize=(20, 4.3 * n), squeeze=False)
    for row, c in zip(ax, comparisons, strict=True):
        m = c.measured
        colors = plt.cm.viridis(np.linspace(0, 0.9, m.p.shape[1]))
        for j, col in enumerate(colors):
            row[0].plot(m.t, m.p[:, j], color=col, lw=1.4)
            row[0].plot(m.t, c.p_pred[:, j], color=col, lw=1.2, ls="--")
            row[1].plot(m.t, m.s[:, j], color=col, lw=1.4)
            row[1].plot(m.t, c.s_pred[:, j], color=col, lw=1.2, ls="--")
        row[1].set_yscale("log")
        ag = c.agreement
        row[0].set_title(f"{Path(c.run).name}: $p_j$ measured (solid) vs ODE (dashed)\nfinal err max "
                         f"{ag['p']['max_final_rel_err']:.1%}, trajectory err max "
                         f"{ag['p']['max_trajectory_rel_err']:.1%}", fontsize=9)
        row[1].set_title(f"$s_j$ measured vs ODE (log); trajectory err max {ag['s']['max_trajectory_rel_err']:.1%}",
                         fontsize=9)
        row[0].set_ylabel(r"$p_j$")
        row[1].set_ylabel(r"$s_j$")
        tau = float(np.mean(c.tau_pred[-1])) if c.params.tau_dynamic else 1.0
        p_all = np.concatenate([m.p.ravel(), c.p_pred.ravel()])
        s_all = np.concatenate([m.s.ravel(), c.s_pred.ravel()])
        window = ((min(0.0, p_all.min()) - 0.05, max(p_all.max(), tau / (1 + c.params.sigma2)) * 1.15),
                  (0.0, s_all.max() * 1.15))
        if c.params.predictor == "linear" and c.params.stop_grad:
            draw_phase_portrait(row[2], c.params, tau=tau, window=window, density=0.8)
        else:  # the fixed points are derived for a trained linear predictor with stop-gradient
            pp = np.linspace(*window[0], 200)
            row[2].plot(pp, pp**2 / c.params.alpha_p, "k--", lw=1.2, label=r"$s = p^2/\alpha_p$")
            row[2].set_xlim(*window[0])
            row[2].set_ylim(*window[1])
            row[2].text(0.5, 0.9, f"predictor {c.params.predictor}: no flow or fixed points drawn", ha="center",
                        transform=row[2].transAxes, fontsize=8)
            row[2].set_xlabel(r"$p_j$")
            row[2].set_ylabel(r"$s_j$")
        for j, col in enumerate(colors):
            row[2].plot(m.p[:, j], m.s[:, j], "-", color=col, lw=1.6, zorder=6)
            row[2].plot(m.p[-1, j], m.s[-1, j], "s", color=col, ms=5, zorder=7)
        row[2].set_title(f"measured paths on the phase portrait\n{param_label(c.params, tau)}", fontsize=8)
        if m.alignment is not None:
            row[3].plot(m.t_align, m.alignment, lw=0.9)
            row[3].set_ylim(-1.05, 1.05)
        else:
            row[3].text(0.5, 0.5, "no alignment measured", ha="center", transform=row[3].transAxes)
        row[3].set_title(r"alignment cos($u_j$, $W_p u_j$) of $\hat F$'s leading modes", fontsize=9)
        held = [a["assumption"] for a in c.assumptions if not a["holds"]]
        row[3].text(0.02, 0.02, "assumptions not met:\n" + "\n".join(held) if held else "all assumptions met",
                    transform=row[3].transAxes, fontsize=7, va="bottom",
                    bbox=dict(facecolor="white", alpha=0.8, edgecolor="0.7"))
        for a in (row[0], row[1], row[3]):
            a.set_xlabel(r"ODE time $t$ = step $\times$ lr / (1 - momentum)")
    fig.tight_layout()
    return fig
