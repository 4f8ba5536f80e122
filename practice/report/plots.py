"""Figures of a training run, drawn from its ``metrics.jsonl`` (the paper's Fig. 2 quantities and the monitors)."""

from __future__ import annotations

from pathlib import Path  # noqa: E402

from ssltheory.theory.io import use_file_backend

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ssltheory.practice.measure.quantities import is_measurement, leading_modes, upgrade  # noqa: E402


def run_title(cfg) -> str:
    """The figure title of a run: dataset, method, predictor and the knobs of the theory (gamma_a only for an EMA
    target)."""
    from ssltheory.practice.methods.registry import METHODS

    ema = f", γ_a={cfg.gamma_a:g}" if "ema" in (cfg.resolved_positive_target, cfg.resolved_negative_target) else ""
    if METHODS[cfg.method].predictor(cfg):
        return (f"{cfg.dataset}, {cfg.method}, predictor={cfg.predictor}, lr={cfg.lr:g}, wd={cfg.weight_decay:g}, "
                f"α_p={cfg.alpha_p:g}{ema}")
    lam = f", λ={cfg.resolved_lam:g}" if cfg.resolved_lam is not None else ""
    positive, negative = cfg.resolved_positive_target, cfg.resolved_negative_target
    negatives = f"/{negative}" if negative not in (None, positive) else ""
    return (f"{cfg.dataset}, {cfg.method} {cfg.resolved_form}{lam}, targets {cfg.resolved_positive_target}{negatives}, "
            f"lr={cfg.lr:g}, wd={cfg.weight_decay:g}{ema}")


def _series(ax, t, y, few: bool, **kw):
    """A line, with markers when there are few points (so one or two measurements still show)."""
    return ax.plot(t, y, marker="o" if few else None, ms=3, **kw)


def _note(ax, text: str, color: str = "0.3") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color=color, wrap=True)


METHOD_PANELS = {
    "pair_similarity": ("negative_cosine",),
    "decorrelation": ("decorrelation",),
    "s_method": ("s_method",),
    "balance": ("balance_ratio", "adaptive_balance"),
    "grad_cosine": ("grad_cosine",),
}
"""The third row of :func:`run_figure` (UniGrad's Fig. 2 and 3): each panel's name in ``fig.panels`` and the record
keys that add it (any one of them in any measurement). ``positive_cosine`` alone adds none: runs from before the
UniGrad methods have it, and their figure stays as it was."""

METHOD_KEYS = ("negative_cosine", "decorrelation", "s_method", "balance_ratio", "adaptive_balance", "grad_cosine")
"""The measurement keys of the UniGrad methods' quantities (see :data:`METHOD_PANELS`)."""

METHOD_MODES = 8
"""How many of the method's F's top eigenvalues the "method's F spectrum" panel draws."""


def method_panels(records: list[dict]) -> list[str]:
    """The names of the third-row panels (:data:`METHOD_PANELS`) that ``records`` have data for, in order."""
    meas = [r for r in records if is_measurement(r) or "s" in r]
    return [name for name, keys in METHOD_PANELS.items()
            if any(r.get(k) is not None for r in meas for k in keys)]


def _layout(extra: int):
    """The figure and its axes: the 2 x 4 grid of every run (tight layout), and (``extra`` > 0) a third row of
    ``extra`` panels (as wide as those above, narrower when there are five) on nested grids with fixed margins (tight
    layout cannot place panels of two widths; constrained layout costs seconds per figure)."""
    if not extra:
        fig, ax = plt.subplots(2, 4, figsize=(21, 8.8))
        return fig, ax, []
    fig = plt.figure(figsize=(21, 13.2))
    outer = fig.add_gridspec(3, 1, left=0.045, right=0.985, top=0.93, bottom=0.045, hspace=0.32)
    top = outer[0:2].subgridspec(2, 4, wspace=0.28, hspace=0.32)
    ax = np.array([[fig.add_subplot(top[r, c]) for c in range(4)] for r in range(2)])
    bottom = outer[2].subgridspec(1, max(4, extra), wspace=0.28)
    return fig, ax, [fig.add_subplot(bottom[0, k]) for k in range(extra)]


def _column(meas: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of the measurements that have ``key`` (a number each)."""
    have = [r for r in meas if r.get(key) is not None]
    return np.array([r["epoch"] for r in have], float), np.array([r[key] for r in have], float)


def _draw_method_panels(axes: list, names: list[str], meas: list[dict], panels: dict) -> None:
    """Draw the third row (:data:`METHOD_PANELS`) on ``axes``, one per name; what each drew goes into ``panels``:
    {"x": epochs, "y": values} of the measurements that have the key (``x`` and ``y`` dicts by record key where a
    panel has several series; "s_method": ``y`` (n, k) and its "reference", F̂'s s_1 / tr F̂)."""
    for a, name in zip(axes, names, strict=True):
        few = sum(any(r.get(k) is not None for k in METHOD_PANELS[name]) for r in meas) <= 30
        if name == "pair_similarity":
            a.set_title("pair similarity: mean cos of the outputs (1 = collapsed)", fontsize=10)
            x, y = {}, {}
            for key, label, color in (("positive_cosine", "positive pairs (two views of an image)", "tab:blue"),
                                      ("negative_cosine", "negative pairs (different images)", "tab:red")):
                x[key], y[key] = _column(meas, key)
                if len(x[key]):
                    _series(a, x[key], y[key], few, color=color, label=label)
            low = min([0.0] + [float(np.nanmin(v)) for v in y.values() if np.isfinite(v).any()])
            a.set_ylim(min(-0.05, low - 0.05), 1.05)
            a.axhline(0.0, color="0.6", lw=0.6)
            a.legend(fontsize=8, loc="best")
            panels[name] = {"x": x, "y": y}
        elif name == "decorrelation":
            a.set_title("decorrelation: mean |off-diagonal corr.| (0 = decorrelated)", fontsize=10)
            x, y = _column(meas, "decorrelation")
            _series(a, x, y, few, color="tab:purple")
            a.set_ylim(bottom=0.0)
            panels[name] = {"x": x, "y": y}
        elif name == "s_method":
            _draw_s_method(a, meas, few, panels)
        elif name == "balance":
            adaptive = any(r.get("adaptive_balance") is not None for r in meas)
            a.set_title(r"balance: $\|\lambda G_{neg}\| / \|u_2\|$" + (r", adaptive $\lambda$ (right)" if adaptive
                                                                       else ""), fontsize=10)
            x, y, handles = {}, {}, []
            for key, label, color, axis in (
                    ("balance_ratio", r"balance ratio $\|\lambda G_{neg}\| / \|u_2\|$", "tab:blue", a),
                    ("adaptive_balance", r"adaptive $\lambda$: mean $\lambda_i$ (DirectPred gradient)", "tab:orange",
                     None)):
                xs, ys = _column(meas, key)
                if not len(xs):
                    continue
                if axis is None:
                    axis = a.twinx()
                    axis.set_ylabel(r"mean $\lambda_i$")
                handles += _series(axis, xs, ys, few, color=color, ls="-" if axis is a else "--", label=label)
                x[key], y[key] = xs, ys
            if "balance_ratio" in y:
                a.axhline(1.0, color="0.6", lw=0.6, ls=":")
                a.set_ylabel("balance ratio")
            a.legend(handles=handles, fontsize=8, loc="best")
            panels[name] = {"x": x, "y": y}
        elif name == "grad_cosine":
            a.set_title("simplified vs exact gradient: mean cos", fontsize=10)
            x, y = _column(meas, "grad_cosine")
            _series(a, x, y, few, color="tab:green")
            a.axhline(0.0, color="0.6", lw=0.6)
            a.set_ylim(-1.05, 1.05)
            panels[name] = {"x": x, "y": y, "ylim": (-1.05, 1.05)}
        a.set_xlabel("epoch")


def _draw_s_method(a, meas: list[dict], few: bool, panels: dict) -> None:
    """The "method's F spectrum" panel: the top :data:`METHOD_MODES` eigenvalues of the method's F (log; those
    <= 0 are not drawn, and a note says so) and, for reference, F̂'s s_1 / tr F̂ (the same scale: the method's F has
    trace 1 under l2 normalisation)."""
    have = [r for r in meas if r.get("s_method") is not None]
    x = np.array([r["epoch"] for r in have], float)
    k = min(METHOD_MODES, max(len(r["s_method"]) for r in have))
    y = np.full((len(have), k), np.nan)
    for i, r in enumerate(have):
        top = np.asarray(r["s_method"], float)[:k]
        y[i, :len(top)] = top
    a.set_title(f"method's F spectrum: top {k} eigenvalues (log)", fontsize=10)
    colors = plt.cm.viridis(np.linspace(0, 0.9, k))
    for j in range(k):
        _series(a, x, np.where(y[:, j] > 0, y[:, j], np.nan), few, color=colors[j], lw=0.9,
                label="method's F, $s_1$ ... $s_k$" if j == 0 else None)
    panels["s_method"] = {"x": x, "y": y}
    ref = [r for r in have if r.get("s")]
    if ref:
        share = np.array([r["s"][0] / sum(r["s"]) if sum(r["s"]) > 0 else np.nan for r in ref], float)
        xr = np.array([r["epoch"] for r in ref], float)
        _series(a, xr, share, few, color="k", ls="--", lw=0.9, label=r"$\hat F$: $s_1 / \mathrm{tr}\,\hat F$")
        panels["s_method"]["reference"] = {"x": xr, "y": share}
    a.set_yscale("log")
    a.legend(fontsize=8, loc="best")
    if np.any(y <= 0):
        note = "eigenvalues <= 0 are not drawn (log scale)"
        a.text(0.5, 0.04, note, ha="center", transform=a.transAxes, fontsize=8, color="0.3")
        panels["s_method"]["note"] = note


def run_figure(records: list[dict], title: str = "", predictor: str | None = None) -> Figure:
    """2 x 4 panels of a run's metrics records: log s_j of F̂; eigenvalues of sym(W_p); alignment and asymmetry of
    W_p on F̂'s leading modes; the collapse AUC of the probe subset with k_eq; the collapse signals (feature std x
    sqrt(d), positive-pair cosine, s_2/s_1 of F̂) with the collapse warnings; kNN accuracy; the loss.

    When the records have the UniGrad methods' quantities (:data:`METHOD_KEYS`), a third row (UniGrad's Fig. 2 and
    3) shows those it has, in this order: "pair similarity" (positive- and negative-pair cosine), "decorrelation",
    "method's F spectrum" (its top eigenvalues, log, with F̂'s s_1 / tr F̂), "balance" (balance ratio, adaptive
    lambda) and "simplified vs exact gradient" (grad_cosine); see :data:`METHOD_PANELS`. Records without them get
    the 2 x 4 figure only.

    ``predictor``: the run's (``none`` has no W_p to show). What each panel drew (or why not) is kept in
    ``fig.panels`` ({name: {"x", "y", "note", "ylim"}}) for tests and readers."""
    records = [upgrade(r) for r in records]  # (older runs' "auc" is the probe AUC)
    meas = [r for r in records if "s" in r]
    knn = [r for r in records if "knn_acc" in r]
    extra = method_panels(records)
    fig, ax, ax_method = _layout(len(extra))
    panels: dict[str, dict] = {}
    few = len(meas) <= 30
    t = np.array([r["epoch"] for r in meas], float)
    has_wp = bool(meas) and "p_sym" in meas[0] and predictor != "none"
    lead = [int(leading_modes(r["s"]).sum()) for r in meas]
    one_mode = bool(lead) and lead[-1] <= 1
    why_no_wp = ("no predictor (W_p = I): nothing to show" if predictor == "none" else
                 "no linear W_p (mlp predictor)" if meas else "no measurements yet")

    a = ax[0, 0]
    if meas:
        s = np.array([r["s"] for r in meas])
        _series(a, t, np.maximum(s, 1e-12), few, lw=0.8)
        a.set_yscale("log")
        panels["s"] = {"x": t, "y": s}
    a.set_title(r"eigenvalues $s_j$ of $\hat F$ (log)" + (f"; leading modes now {lead[-1]}" if lead else ""),
                fontsize=10)
    for a, name, label in ((ax[0, 1], "p_sym", r"eigenvalues of sym($W_p$)"),
                           (ax[0, 2], "alignment", r"alignment cos($u_j$, $W_p u_j$), leading modes of $\hat F$"),
                           (ax[0, 3], "asymmetry", r"asymmetry $\|W_p - W_p^T\|_F / \|W_p\|_F$")):
        a.set_title(label, fontsize=10)
        if not has_wp:
            _note(a, why_no_wp)
            panels[name] = {"note": why_no_wp}
    if has_wp:
        p = np.array([r["p_sym"] for r in meas])
        _series(ax[0, 1], t, p, few, lw=0.8)
        panels["p_sym"] = {"x": t, "y": p}
        top = leading_modes(meas[-1]["s"])
        align = np.array([r["alignment"] for r in meas])[:, top]
        _series(ax[0, 2], t, align, few, lw=0.8)
        ax[0, 2].set_ylim(-1.05, 1.05)
        panels["alignment"] = {"x": t, "y": align}
        asym = {"whole $W_p$": [r["asymmetry"] for r in meas]}
        if "asymmetry_top" in meas[0]:
            asym[r"within the leading modes of $\hat F$"] = [r["asymmetry_top"] for r in meas]
        for (label, y), color in zip(asym.items(), ("tab:purple", "tab:orange"), strict=False):
            _series(ax[0, 3], t, y, few, color=color, label=label)
        top_value = max(max(v) for v in asym.values())
        ylim = (0.0, max(0.05, 1.1 * top_value))  # rounding noise (1e-16, DirectPred) is not a trend
        ax[0, 3].set_ylim(*ylim)
        ax[0, 3].legend(fontsize=8)
        panels["asymmetry"] = {"x": t, "y": asym, "ylim": ylim}
        if predictor == "directpred":
            msg = "DirectPred sets W_p from F̂'s eigenvectors:\naligned and symmetric by construction"
            for a, name in ((ax[0, 2], "alignment"), (ax[0, 3], "asymmetry")):
                a.text(0.5, 0.12, msg, ha="center", transform=a.transAxes, fontsize=8, color="0.3")
                panels[name]["note"] = msg
        if one_mode:
            msg = "F̂ has one leading mode (rank-one collapse):\nalignment 1 and asymmetry 0 are trivial here"
            for a, name in ((ax[0, 2], "alignment"), (ax[0, 3], "asymmetry")):
                _note(a, msg, color="tab:red")
                panels[name]["note"] = msg

    a = ax[1, 0]
    probe = f"{meas[-1]['probe_n']} probe images" if meas and "probe_n" in meas[-1] else "the probe subset"
    a.set_title(f"collapse metric of backbone features (Li et al.), {probe}", fontsize=10)
    if meas:
        h1 = _series(a, t, [r["probe_auc"] for r in meas], few, color="tab:red", label="AUC (left; 1 = rank one)")
        a.set_ylabel("probe AUC")
        tw = a.twinx()
        h2 = _series(tw, t, [r["probe_k_eq"] for r in meas], few, color="tab:blue", ls="--",
                     label=r"$k_{eq} = 1 + 2d(1 - AUC)$ (right)")
        tw.set_ylabel(r"$k_{eq}$ (effective dimensions)")
        a.legend(handles=h1 + h2, fontsize=8, loc="best")
        panels["auc"] = {"x": t, "y": [r["probe_auc"] for r in meas]}

    a = ax[1, 1]
    a.set_title("collapse signals (0 / 1 = collapsed)", fontsize=10)
    if meas:
        signals = {r"feature std $\times\sqrt{d}$ (→ 0)": [r.get("feature_std_x_sqrt_d") for r in meas],
                   r"$s_2 / s_1$ of $\hat F$ (→ 0)": [r["s"][1] / r["s"][0] if len(r["s"]) > 1 and r["s"][0] > 0
                                                         else 0.0 for r in meas]}
        if "positive_cosine" in meas[0]:
            signals["positive-pair cosine (→ 1)"] = [r.get("positive_cosine") for r in meas]
        for (label, y), color in zip(signals.items(), ("tab:purple", "tab:brown", "tab:gray"), strict=False):
            _series(a, t, np.array(y, float), few, color=color, label=label)
        warned = [r["epoch"] for r in meas if r.get("warning")]
        for i, e in enumerate(warned):
            a.axvline(e, color="tab:red", lw=0.8, alpha=0.6, label="collapse warning" if i == 0 else None)
        a.set_ylim(-0.02, 1.05)
        a.legend(fontsize=8, loc="best")
        panels["signals"] = {"x": t, "y": signals, "warnings": warned}

    a = ax[1, 2]
    a.set_title("kNN accuracy (k = 200, T = 0.1)", fontsize=10)
    if knn:
        acc = [100 * r["knn_acc"] for r in knn]
        a.plot([r["epoch"] for r in knn], acc, "o-", color="tab:green")
        a.axhline(acc[0], color="k", ls="--", lw=0.8, label="random init")
        ylim = (max(0.0, min(acc) - 10.0), 100.0)  # a fixed scale: a 0.2-point wiggle is not a curve
        a.set_ylim(*ylim)
        a.set_ylabel("kNN top-1 (%)")
        a.legend(fontsize=8)
        panels["knn"] = {"x": [r["epoch"] for r in knn], "y": acc, "ylim": ylim}
    else:
        _note(a, "no labels: no kNN")
        panels["knn"] = {"note": "no labels: no kNN"}

    a = ax[1, 3]
    a.set_title("loss (mean since the last measurement)", fontsize=10)
    if meas:
        _series(a, t, [r["loss"] for r in meas], few, color="k", lw=0.9)
    for a in ax.ravel():
        a.set_xlabel("epoch")
    if extra:
        _draw_method_panels(ax_method, extra, [r for r in records if is_measurement(r) or "s" in r], panels)
    fig.suptitle(title, fontsize=11)
    if not extra:
        fig.tight_layout()
    fig.panels = panels
    return fig


def compare_figure(comparisons: list) -> Figure:
    """One row per run: p_j(t) and s_j(t) measured (solid) vs predicted (dashed), the measured (p_j, s_j) paths on
    the phase portrait at the run's final mean tau, and the alignment of W_p with F̂ over time."""
    from ssltheory.theory.plots import draw_phase_portrait, param_label

    n = len(comparisons)
    fig, ax = plt.subplots(n, 4, figsize=(20, 4.3 * n), squeeze=False)
    for row, c in zip(ax, comparisons, strict=True):
        if not hasattr(c.params, "alpha_p"):  # a unified-gradient form (theory/unified.py)
            _unified_compare_row(row, c)
            continue
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


def _assumptions_box(ax, c) -> None:
    held = [a["assumption"] for a in c.assumptions if not a["holds"]]
    ax.text(0.02, 0.02, "assumptions not met:\n" + "\n".join(held) if held else "all assumptions met",
            transform=ax.transAxes, fontsize=7, va="bottom", bbox=dict(facecolor="white", alpha=0.8, edgecolor="0.7"))


def _unified_compare_row(row, c) -> None:
    """A unified-form run beside (U3)-(U4): s_j(t) and tau_j(t) measured (solid) vs ODE (dashed), the measured
    (s_j, tau_j) paths on the mode's phase portrait, and the assumptions with the mapped constants."""
    from ssltheory.theory.unified_plots import draw_unified_portrait, unified_window

    m, a, ag = c.measured, c.params, c.agreement
    colors = plt.cm.viridis(np.linspace(0, 0.9, m.s.shape[1]))
    tau = m.tau if m.tau is not None else np.ones_like(m.s)
    for j, col in enumerate(colors):
        row[0].plot(m.t, m.s[:, j], color=col, lw=1.4)
        row[0].plot(m.t, c.s_pred[:, j], color=col, lw=1.2, ls="--")
        row[1].plot(m.t, tau[:, j], color=col, lw=1.4)
        row[1].plot(m.t, c.tau_pred[:, j], color=col, lw=1.2, ls="--")
    row[0].axhline(a.s_star, color="tab:red", lw=0.9, ls=":", label=rf"$s^*$ = {a.s_star:.3g}")
    row[0].legend(fontsize=8)
    row[0].set_title(f"{Path(c.run).name}: $s_j$ measured (solid) vs (U3)-(U4) (dashed), ranks over the spectrum\n"
                     f"final err max {ag['s']['max_final_rel_err']:.1%}, trajectory err max "
                     f"{ag['s']['max_trajectory_rel_err']:.1%}", fontsize=9)
    row[0].set_ylabel(r"$s_j$")
    tau_note = (f"trajectory err max {ag['tau']['max_trajectory_rel_err']:.1%} (ranks swap where paths cross)"
                if "tau" in ag else "stop-gradient: τ = 1")
    row[1].set_title(rf"$\tau_j$ measured vs ODE; {tau_note}", fontsize=9)
    row[1].set_ylabel(r"$\tau_j$")
    window = unified_window(a, s_max=float(max(m.s.max(), c.s_pred.max())))
    if a.ema:
        window = (window[0], (0.0, max(window[1][1], 1.1 * float(tau.max()))))
    draw_unified_portrait(row[2], a, window=window, density=0.8)
    for j, col in enumerate(colors):
        if a.ema:
            row[2].plot(m.s[:, j], tau[:, j], "-", color=col, lw=1.6, zorder=6)
            row[2].plot(m.s[-1, j], tau[-1, j], "s", color=col, ms=5, zorder=7)
        else:
            row[2].plot(m.s[-1, j], 0.0, "s", color=col, ms=5, zorder=7)
    row[2].set_title("measured paths on the mode's phase portrait\n" + row[2].get_title(), fontsize=8)
    row[3].axis("off")
    lines = [f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in (
        ("time per step", c.alpha), ("form", a.form), ("lambda", a.lam), ("eta", a.eta), ("sigma^2", a.sigma2),
        ("beta", a.beta if a.ema else "stop-grad"), ("F branch", a.f_branch), ("s*", a.s_star))]
    row[3].text(0.02, 0.98, "ODE constants\n" + "\n".join(lines), transform=row[3].transAxes, fontsize=8, va="top")
    _assumptions_box(row[3], c)
    for x in (row[0], row[1]):
        x.set_xlabel(r"ODE time $t$ = step $\times$ lr / (1 - momentum)")


def save_run_figure(cfg, records: list[dict], path: Path) -> Path:
    """Draw a run's ``dynamics.png`` from its records (:func:`run_figure`; a method without a trained predictor has
    the identity, no W_p to show) and write it atomically."""
    from ssltheory.practice.methods.registry import METHODS
    from ssltheory.theory.io import save_figure

    predictor = cfg.predictor if METHODS[cfg.method].predictor(cfg) else "none"
    return save_figure(run_figure(records, run_title(cfg), predictor), path)
