"""Figures of the theory: phase portraits (Fig. 3), p' on the parabola (Fig. 4), trajectories (Fig. 5).

Each function draws into matplotlib axes or returns a Figure; saving is the caller's job. Colours follow the
paper: red = stable, green = unstable, black = saddle / semi-stable, blue = flow lines, dashed black = the
invariant parabola s = p^2 / alpha_p.
"""

from __future__ import annotations

import math

from .io import use_file_backend

use_file_backend()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .fixed_points import (  # noqa: E402
    FixedPoint,
    collapse_threshold,
    fixed_points,
    invariant_parabola,
    parabola_fixed_points,
    parabola_flow,
    parabola_offset_decay,
    parabola_points,
)
from .modes import mode_rates  # noqa: E402
from .params import ModeParams  # noqa: E402
from .simulate import SimulationResult  # noqa: E402

KIND_COLOR = {"stable": "tab:red", "unstable": "tab:green", "saddle": "black", "semi-stable": "black",
              "non-hyperbolic": "tab:gray"}


def param_label(params: ModeParams, tau: float | None = None) -> str:
    """Short mathtext label of the constants, e.g. 'η=0.01, α_p=1, τ=1, σ²=0.5'."""
    parts = [rf"$\eta$={params.eta:g}", rf"$\alpha_p$={params.alpha_p:g}"]
    if tau is not None:
        parts.append(rf"$\tau$={tau:g}")
    elif params.ema:
        parts.append(rf"$\beta$={params.beta:g}")
    parts.append(rf"$\sigma^2$={params.sigma2:g}")
    return ", ".join(parts)


def default_window(params: ModeParams, tau: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """A (p, s) window that shows every fixed point and the parabola: p in [-0.5 P, 1.5 P], P = tau/(1+sigma^2)."""
    pc = abs(tau) / (1.0 + params.sigma2) or 1.0
    p_lo, p_hi = -0.5 * pc, 1.5 * pc
    s_hi = max(invariant_parabola(p_hi, params.alpha_p) if params.alpha_p > 0 else 1.0, 0.2)
    return (p_lo, p_hi), (-0.03 * float(s_hi), float(s_hi))


CROWDED_IN = 0.2
"""Two fixed points closer than this (inches on the page) would hide each other at the default marker size."""


def fixed_point_name(fp: FixedPoint, params: ModeParams, tau: float) -> str:
    """``0`` for the collapsed origin, ``p*_-`` / ``p*_+`` (mathtext) for the roots of Eq. 16, else ``(p, s)``."""
    if fp.p == 0.0 and fp.s == 0.0:
        return "0"
    pm, pp = parabola_fixed_points(params.eta, tau, params.sigma2)
    for root, name in ((pm, r"$p^*_-$"), (pp, r"$p^*_+$")):
        if math.isfinite(root) and math.isclose(fp.p, root, rel_tol=1e-9, abs_tol=1e-300):
            return name
    return f"({fp.p:.3g}, {fp.s:.3g})"


def fixed_point_markers(points: list[FixedPoint], params: ModeParams, tau: float, window,
                        axes_inches: tuple[float, float] = (3.8, 3.4)) -> list[dict]:
    """How to draw and label the isolated fixed points of a phase portrait so that none hides another.

    At small eta the saddle p*_- = eta / tau + O(eta^2) sits next to the stable origin (0.0102 at eta = 0.01,
    0.002 at 0.002): at the default size their markers overlap. Points closer than :data:`CROWDED_IN` on the page
    (``axes_inches`` is the axes' size) form a group: the first (the origin) becomes a large hollow ring drawn
    underneath, the others smaller filled dots on top of it, and each member's label moves out to its own offset
    with an arrow. Returns one dict per point inside the window: ``name``, ``p``, ``s``, ``kind``, ``color``,
    ``ms`` (marker size, points), ``filled``, ``zorder``, ``label`` (text), ``offset`` (points) and ``arrow``.
    """
    (p_lo, p_hi), (s_lo, s_hi) = window
    w, h = axes_inches
    inside = [fp for fp in points if p_lo <= fp.p <= p_hi and s_lo <= fp.s <= s_hi]
    xy = [((fp.p - p_lo) / (p_hi - p_lo) * w, (fp.s - s_lo) / (s_hi - s_lo) * h) for fp in inside]
    group = list(range(len(inside)))  # union of points closer than CROWDED_IN, by their first member
    for i in range(len(inside)):
        for j in range(i):
            if math.dist(xy[i], xy[j]) < CROWDED_IN:
                group[i] = group[j]
    out = []
    for i, fp in enumerate(inside):
        name = fixed_point_name(fp, params, tau)
        members = [k for k in range(len(inside)) if group[k] == group[i]]
        rank = members.index(i)
        label = f"origin ({fp.kind})" if name == "0" else f"{name} = {fp.p:.3g} ({fp.kind})"
        if len(members) == 1:
            out.append(dict(name=name, p=fp.p, s=fp.s, kind=fp.kind, color=KIND_COLOR[fp.kind], ms=9.0,
                            filled=True, zorder=5, label=label, offset=(7.0, 7.0), arrow=False))
        else:
            out.append(dict(name=name, p=fp.p, s=fp.s, kind=fp.kind, color=KIND_COLOR[fp.kind],
                            ms=15.0 if rank == 0 else 6.0, filled=rank > 0, zorder=5 + rank, label=label,
                            offset=(28.0 + 8.0 * rank, 16.0 + 20.0 * rank), arrow=True))
    return out


def draw_phase_portrait(ax, params: ModeParams, tau: float = 1.0, window=None, density: float = 1.3) -> list:
    """Flow of (p_j, s_j) at fixed tau with the invariant parabola and the fixed points; returns the fixed points.

    Isolated fixed points are drawn and labelled by :func:`fixed_point_markers` (a crowded pair as a ring with a
    dot inside, each with its own label).
    """
    window = window or default_window(params, tau)
    (p_lo, p_hi), (s_lo, s_hi) = window
    fixed_params = params.replace(tau_fixed=tau)
    P, S = np.meshgrid(np.linspace(p_lo, p_hi, 60), np.linspace(s_lo, s_hi, 60))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        dP, dS, _ = mode_rates(P, S, np.full_like(P, tau), fixed_params)
        # streamplot follows the direction of (dP, dS) at speed-normalised steps, so one common scale changes no
        # line; dividing by the largest rate keeps its arithmetic away from float64's ends for any accepted constants.
        top = float(np.max(np.abs(np.stack([dP, dS])))) if np.all(np.isfinite(dP) & np.isfinite(dS)) else 0.0
        if top > 0:
            ax.streamplot(P, S, dP / top, dS / top, density=density, color="tab:blue", linewidth=0.7,
                          arrowsize=0.8)
    pp = np.linspace(p_lo, p_hi, 300)
    handles = ax.plot(pp, invariant_parabola(pp, params.alpha_p), "k--", lw=1.4, label=r"$s = p^2/\alpha_p$")
    fps = fixed_points(params, tau=tau)
    kinds: list[str] = []
    for fp in fps:
        if not isinstance(fp, FixedPoint):
            x0, x1 = (max(fp.p[0], p_lo), min(fp.p[1], p_hi))
            y0, y1 = (max(fp.s[0], s_lo), min(fp.s[1], s_hi))
            if x1 >= x0 and y1 >= y0:
                ax.plot([x0, x1], [y0, y1], "-", lw=4, color=KIND_COLOR[fp.kind], alpha=0.85, zorder=4)
                if fp.kind not in kinds:
                    kinds.append(fp.kind)
                    handles.append(plt.Line2D([], [], ls="-", lw=4, color=KIND_COLOR[fp.kind], label=fp.kind))
    bbox = ax.get_position()
    size = ax.figure.get_size_inches()
    axes_inches = (bbox.width * size[0], bbox.height * size[1])
    isolated = [fp for fp in fps if isinstance(fp, FixedPoint)]
    for m in fixed_point_markers(isolated, params, tau, window, axes_inches):
        ax.plot(m["p"], m["s"], "o", ms=m["ms"], zorder=m["zorder"], color=m["color"],
                mfc=m["color"] if m["filled"] else "none", mec="white" if m["filled"] else m["color"],
                mew=1.2 if m["filled"] else 2.5)
        ax.annotate(m["label"], (m["p"], m["s"]), textcoords="offset points", xytext=m["offset"], fontsize=8,
                    color=m["color"], zorder=7,
                    arrowprops=dict(arrowstyle="-", color=m["color"], lw=0.8) if m["arrow"] else None,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
        if m["kind"] not in kinds:
            kinds.append(m["kind"])
            handles.append(plt.Line2D([], [], ls="", marker="o", ms=8, color=m["color"], mec="white",
                                      label=m["kind"]))
    ax.set_xlim(p_lo, p_hi)
    ax.set_ylim(s_lo, s_hi)
    ax.set_xlabel(r"$p_j$ (eigenvalue of $W_p$)")
    ax.set_ylabel(r"$s_j$ (eigenvalue of $F$)")
    ax.set_title(param_label(params, tau), fontsize=10)
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.9)
    return fps


PHASE_TITLE = r"Phase portrait of the decoupled modes (Eqs. 11-12) at fixed $\tau$"


def phase_portrait_figure(params_list: list[ModeParams], tau: float = 1.0) -> Figure:
    """Panels side by side, one per parameter set (Fig. 3 for eta in {0, 0.01, 1}).

    One panel is too narrow for the title on one line: it gets two, and tight_layout keeps both inside the figure.
    """
    n = len(params_list)
    fig, axes = plt.subplots(1, n, figsize=(max(4.6 * n, 5.0), 4.6 if n == 1 else 4.4), squeeze=False)
    title = PHASE_TITLE if n > 1 else PHASE_TITLE.replace(" (Eqs.", "\n(Eqs.")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()  # place the axes first: the markers' layout needs their final size on the page
    for ax, params in zip(axes[0], params_list, strict=True):
        draw_phase_portrait(ax, params, tau)
    fig.tight_layout()
    return fig


def parabola_flow_figure(etas: list[float], tau: float = 1.0, sigma2: float = 0.5) -> Figure:
    """p' on the invariant parabola (Eq. 16) against p, one panel per eta (Fig. 4)."""
    thr = collapse_threshold(tau, sigma2)
    n = len(etas)
    fig, axes = plt.subplots(1, n, figsize=(max(4.4 * n, 5.0), 4.1 if n == 1 else 3.8), squeeze=False)
    pc = tau / (1.0 + sigma2)
    p = np.linspace(-0.25 * pc, 1.3 * pc, 400)
    for ax, eta in zip(axes[0], etas, strict=True):
        ax.plot(p, parabola_flow(p, eta, tau, sigma2), color="tab:blue", lw=1.8)
        ax.axhline(0, color="0.4", lw=0.8)
        for i, fp in enumerate(parabola_points(eta, tau, sigma2)):
            ax.plot(fp["p"], 0, "o", ms=9, color=KIND_COLOR[fp["kind"]], mec="white", zorder=5)
            ax.annotate(f"{fp['kind']}\np={fp['p']:.3g}", (fp["p"], 0), textcoords="offset points",
                        xytext=(0, 12 if i % 2 == 0 else -26), ha="center", fontsize=8,
                        color=KIND_COLOR[fp["kind"]])
        regime = ("no weight decay" if eta == 0 else
                  r"$\eta \leq \tau^2/4(1+\sigma^2)$" if eta <= thr else r"$\eta > \tau^2/4(1+\sigma^2)$: collapse")
        ax.set_title(rf"$\eta$={eta:.3g}: {regime}", fontsize=10)
        ax.set_xlabel(r"$p_j$")
        ax.set_ylabel(r"$\dot p_j$ on the parabola")
    # One panel is too narrow for the title on one line: two lines there.
    fig.suptitle("Eq. 16 on the invariant parabola" + ("\n" if n == 1 else " ")
                 + rf"($\tau$={tau:g}, $\sigma^2$={sigma2:g}, threshold $\eta$={thr:.3g})", fontsize=12)
    fig.tight_layout()
    return fig


def mode_colors(n: int):
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def modes_figure(results: list[SimulationResult]) -> Figure:
    """Fig. 5 style: one row per run; columns p_j(t), s_j(t), tau_j(t), and the parabola offset check."""
    n = len(results)
    fig, axes = plt.subplots(n, 4, figsize=(17, 3.3 * n), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        a = res.config.params
        t = res.t
        colors = mode_colors(len(res.config.p0))
        pm, pp = parabola_fixed_points(a.eta, 1.0, a.sigma2)
        top = 1e-12
        for j, c in enumerate(colors):
            lbl = rf"$p_0$={res.config.p0[j]:g}"
            if res.summary.get("diverged", [False] * len(colors))[j]:
                # A diverged mode runs off to 1e300 and then NaN: drawn, it would flatten every other curve. It
                # gets a legend entry saying so instead.
                by = res.summary["diverged_by_t"][j]
                row[0].plot([], [], color=c, ls=":", label=lbl + f": diverged (t ≤ {by:.3g})")
                continue
            row[0].plot(t, res.series["p_eff"][:, j], color=c, label=lbl)
            row[1].plot(t, res.series["s"][:, j], color=c)
            row[2].plot(t, res.series["tau"][:, j], color=c)
            off = np.abs(res.series["offset"][:, j])
            top = max(top, float(np.max(off)))
            row[3].semilogy(t, np.maximum(off, 1e-300), color=c)
            if off[0] > 0:
                row[3].semilogy(t, np.maximum(parabola_offset_decay(off[0], a.eta, t), 1e-300), ":", color=c)
        for val, name in ((pp, r"$p^*_+$"), (pm, r"$p^*_-$")):
            if math.isfinite(val) and val > 0:
                row[0].axhline(val, ls="--", color="tab:red" if name == r"$p^*_+$" else "tab:green", lw=1,
                               label=name + rf" ($\tau$=1) = {val:.3g}")
        row[0].set_ylabel(r"$p_j$")
        row[1].set_ylabel(r"$s_j$")
        row[2].set_ylabel(r"$\tau_j$")
        row[3].set_ylabel(r"$|s_j - p_j^2/\alpha_p|$")
        row[3].set_ylim(1e-12, 10 * min(top, 1e300))
        row[0].legend(fontsize=7, loc="best")
        label = param_label(a) + f", α={res.config.lr:g}, {res.config.integrator}"
        row[0].set_title(r"predictor eigenvalue $p_j$" + "\n" + label, fontsize=9)
        row[1].set_title(r"eigenvalue $s_j$ of $F$", fontsize=9)
        row[2].set_title(r"EMA ratio $\tau_j$ (Eq. 13)", fontsize=9)
        row[3].set_title(r"parabola offset (dotted: $c_j e^{-2\eta t}$; Euler adds O($\alpha$))", fontsize=9)
        for ax in row:
            ax.set_xlabel("t = step × α")
    fig.tight_layout()
    return fig


MODE_LEGEND_MAX = 6
"""At most this many modes get a legend entry (evenly spread over j, the first and the last included)."""


def matrix_panels(res: SimulationResult) -> list[dict]:
    """What one row of :func:`matrix_figure` plots, as data: one dict per panel with ``title``, ``ylabel``,
    ``yscale`` (``linear``, ``log`` or ``symlog`` with ``linthresh``), ``ylim`` (or None) and ``lines``, a list of
    ``{"y": array (T,), "label": str or None, "color", "mode": j or None}``.

    Modes j = 1..n are the eigen-directions of F in descending order of s_j (the order of the diagnostics), each
    with one colour in the first three panels; a few of them are labelled for the legend. lambda_min(K) keeps its
    sign (symlog): Theorem 3's alignment needs K > 0, so the sign is the point.
    """
    a, d = res.config.params, res.series
    n = d["s"].shape[1]
    colors = mode_colors(n)
    labelled = set(np.unique(np.linspace(0, n - 1, min(n, MODE_LEGEND_MAX)).round().astype(int)).tolist())

    def modes(key: str, legend: bool = False) -> list[dict]:
        return [{"y": d[key][:, j], "color": colors[j], "mode": j + 1,
                 "label": (f"mode j = {j + 1}" + (" (largest $s_j$)" if j == 0 else ""))
                 if legend and j in labelled else None} for j in range(n)]

    integ = res.summary.get("theorem1_integrator", res.config.integrator)
    diag = []
    for key, label, color in (("commutator", r"$\|[F, W_p]\|_F$", "tab:blue"),
                              ("asymmetry", "asymmetry of $W_p$", "tab:orange"),
                              ("theorem1", f"Thm 1 residual ({integ})", "tab:green")):
        vals = np.abs(d[key])
        if np.any(np.isfinite(vals) & (vals > 0)):
            diag.append({"y": np.maximum(vals, 1e-16), "label": label, "color": color, "mode": None})
    lam = np.asarray(d["lambda_min_K"], float)
    finite = lam[np.isfinite(lam)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    title0 = (r"eigenvalues $s_j$ of $F = WXW^T$" + "\n" + param_label(a)
              + f", {res.config.model}, pred={a.predictor}")
    return [
        {"title": title0, "ylabel": r"$s_j$", "yscale": "linear", "ylim": None, "lines": modes("s", legend=True)},
        {"title": r"eigenvalues of sym($W_p$)", "ylabel": r"eigenvalue of sym($W_p$)", "yscale": "linear",
         "ylim": None, "lines": modes("p_sym")},
        {"title": r"alignment cos($u_j$, $W_p u_j$)", "ylabel": r"cos($u_j$, $W_p u_j$)", "yscale": "linear",
         "ylim": (-1.05, 1.05), "lines": modes("alignment")},
        {"title": "commutator, asymmetry, Theorem 1 residual\n" + _theorem1_scope(res), "ylabel": "value (log scale)",
         "yscale": "log", "ylim": None, "lines": diag},
        {"title": r"$\lambda_{min}(K)$ of Eq. 9 (Theorem 3 needs > 0)", "ylabel": r"$\lambda_{min}(K)$ (symlog)",
         "yscale": "symlog", "linthresh": max(1e-2 * scale, 1e-12), "ylim": None,
         "lines": [{"y": lam, "label": r"$\lambda_{min}(K)$", "color": "tab:red", "mode": None}]},
    ]


def _symlog_ticks(lo: float, hi: float, linthresh: float) -> list[float]:
    """0 and the decades +-10^k from 10 x ``linthresh`` out to the limits: none crowd around 0."""
    top = max(abs(lo), abs(hi), 10.0 * linthresh)
    ks = range(math.ceil(math.log10(linthresh)) + 1, math.ceil(math.log10(top)) + 1)
    ticks = [0.0] + [sign * 10.0 ** k for k in ks for sign in (-1.0, 1.0)]
    return sorted(v for v in ticks if lo <= v <= hi)


def _theorem1_scope(res: SimulationResult) -> str:
    """Which integrator the Theorem 1 residual is for, in a few words (the summary's theorem1_note in full)."""
    if res.config.model == "sgd":
        return f"(sgd, lr {res.config.lr:g}: O(lr) + batch noise; solve_ivp: < 1e-6)"
    if res.config.integrator == "euler":
        return f"(euler, step {res.config.lr:g}: O(step); solve_ivp rk45/dop853: < 1e-6)"
    return f"({res.config.integrator}: < 1e-6)"


def matrix_figure(results: list[SimulationResult]) -> Figure:
    """One row per full-matrix or SGD run, the panels of :func:`matrix_panels`: spectra of F and sym(W_p) and the
    alignment per mode (legend: mode j), the log-scale diagnostics, and the signed lambda_min(K)."""
    n = len(results)
    fig, axes = plt.subplots(n, 5, figsize=(21, 3.5 * n), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        t = res.t
        for ax, panel in zip(row, matrix_panels(res), strict=True):
            for line in panel["lines"]:
                ax.plot(t, line["y"], color=line["color"], label=line["label"], lw=1.2)
            if panel["yscale"] == "symlog":
                ax.set_yscale("symlog", linthresh=panel["linthresh"], linscale=1.5)
                ax.axhline(0.0, color="0.3", lw=0.8)
                lo, hi = ax.get_ylim()
                if lo < 0:  # shade K's non-positive side, where Theorem 3 says nothing
                    ax.axhspan(lo, 0.0, color="tab:red", alpha=0.06, lw=0)
                ax.set_yticks(_symlog_ticks(lo, hi, panel["linthresh"]))
                ax.set_ylim(lo, hi)
            elif panel["yscale"] == "log":
                ax.set_yscale("log")
            if panel["ylim"] is not None:
                ax.set_ylim(*panel["ylim"])
            ax.set_title(panel["title"], fontsize=9)
            ax.set_ylabel(panel["ylabel"])
            ax.set_xlabel("t = step × α")
            if any(line["label"] for line in panel["lines"]):
                ax.legend(fontsize=7, loc="best")
        if res.summary.get("diverged"):
            row[0].text(0.5, 0.5, f"diverged (t ≤ {res.summary['diverged_by_t']:.3g})", transform=row[0].transAxes,
                        ha="center", color="tab:red", fontsize=10)
    fig.tight_layout()
    return fig


def reduced_figure(results: list[SimulationResult]) -> Figure:
    """Figs. 8 and 9: one row per run of the reduced flow; spectra of F and sym(W_p), ||A||, ||B||, ||[F, W_p]||."""
    n = len(results)
    fig, axes = plt.subplots(n, 4, figsize=(17, 3.3 * n), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        a, t, d = res.config.params, res.t, res.series
        row[0].plot(t, d["s"])
        row[1].plot(t, d["p_sym"])
        row[2].semilogy(t, np.maximum(d["norm_A"], 1e-300), label=r"$\|A\|_F$, A = sym($W_p$)")
        row[2].semilogy(t, np.maximum(d["norm_B"], 1e-300), label=r"$\|B\|_F$, B = antisym($W_p$)")
        row[3].semilogy(t, np.maximum(d["commutator"], 1e-300), color="tab:red")
        row[0].set_title(r"eigenvalues $s_j$ of $F$" + "\n" + param_label(a, res.summary["tau"])
                         + f", {res.summary['flow']}", fontsize=9)
        row[1].set_title(r"eigenvalues of sym($W_p$)", fontsize=9)
        row[2].set_title("symmetric and antisymmetric parts of $W_p$ (Fig. 8)", fontsize=9)
        row[2].legend(fontsize=7)
        row[3].set_title(r"$\|[F, W_p]\|_F$ (Fig. 9)", fontsize=9)
        for ax in row:
            ax.set_xlabel("t = step × α")
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)

