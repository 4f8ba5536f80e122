"""Figures of a training run, drawn from its ``metrics.jsonl`` (the paper's Fig. 2 quantities and the monitors)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .measure import TOP_MODES  # noqa: E402


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
            top = s[-1] > TOP_MODES * s[-1][0]
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
    for a in ax.ravel():
        a.set_xlabel("epoch")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
