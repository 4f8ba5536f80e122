"""Figures of the theory: phase portraits (Fig. 3), p' on the parabola (Fig. 4), trajectories (Fig. 5).

Each function draws into matplotlib axes or returns a Figure; saving is the caller's job. Colours follow the
paper: red = stable, green = unstable, black = saddle / semi-stable, blue = flow lines, dashed black = the
invariant parabola s = p^2 / alpha_p.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
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


def draw_phase_portrait(ax, params: ModeParams, tau: float = 1.0, window=None, density: float = 1.3) -> list:
    """Flow of (p_j, s_j) at fixed tau with the invariant parabola and the fixed points; returns the fixed points."""
    (p_lo, p_hi), (s_lo, s_hi) = window or default_window(params, tau)
    fixed_params = params.replace(tau_fixed=tau)
    P, S = np.meshgrid(np.linspace(p_lo, p_hi, 60), np.linspace(s_lo, s_hi, 60))
    dP, dS, _ = mode_rates(P, S, np.full_like(P, tau), fixed_params)
    ax.streamplot(P, S, dP, dS, density=density, color="tab:blue", linewidth=0.7, arrowsize=0.8)
    pp = np.linspace(p_lo, p_hi, 300)
    if params.alpha_p > 0:
        ax.plot(pp, invariant_parabola(pp, params.alpha_p), "k--", lw=1.4, label=r"$s = p^2/\alpha_p$")
    fps = fixed_points(params, tau=tau)
    seen: set[str] = set()
    for fp in fps:
        color = KIND_COLOR[fp.kind]
        label = fp.kind if fp.kind not in seen else None
        seen.add(fp.kind)
        if isinstance(fp, FixedPoint):
            ax.plot(fp.p, fp.s, "o", ms=9, color=color, mec="white", mew=1.2, zorder=5, label=label)
        else:
            x0, x1 = (max(fp.p[0], p_lo), min(fp.p[1], p_hi))
            y0, y1 = (max(fp.s[0], s_lo), min(fp.s[1], s_hi))
            if x1 >= x0 and y1 >= y0:
                ax.plot([x0, x1], [y0, y1], "-", lw=4, color=color, alpha=0.85, zorder=4, label=label)
    ax.set_xlim(p_lo, p_hi)
    ax.set_ylim(s_lo, s_hi)
    ax.set_xlabel(r"$p_j$ (eigenvalue of $W_p$)")
    ax.set_ylabel(r"$s_j$ (eigenvalue of $F$)")
    ax.set_title(param_label(params, tau), fontsize=10)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    return fps


def phase_portrait_figure(params_list: list[ModeParams], tau: float = 1.0) -> Figure:
    """Panels side by side, one per parameter set (Fig. 3 for eta in {0, 0.01, 1})."""
    n = len(params_list)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), squeeze=False)
    for ax, params in zip(axes[0], params_list, strict=True):
        draw_phase_portrait(ax, params, tau)
    fig.suptitle(r"Phase portrait of the decoupled modes (Eqs. 11-12) at fixed $\tau$", fontsize=12)
    fig.tight_layout()
    return fig


def parabola_flow_figure(etas: list[float], tau: float = 1.0, sigma2: float = 0.5) -> Figure:
    """p' on the invariant parabola (Eq. 16) against p, one panel per eta (Fig. 4)."""
    thr = collapse_threshold(tau, sigma2)
    n = len(etas)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.8), squeeze=False)
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
    fig.suptitle(rf"Eq. 16 on the invariant parabola ($\tau$={tau:g}, $\sigma^2$={sigma2:g}, threshold "
                 rf"$\eta$={thr:.3g})", fontsize=12)
    fig.tight_layout()
    return fig


def _mode_colors(n: int):
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def modes_figure(results: list[SimulationResult]) -> Figure:
    """Fig. 5 style: one row per run; columns p_j(t), s_j(t), tau_j(t), and the parabola offset check."""
    n = len(results)
    fig, axes = plt.subplots(n, 4, figsize=(17, 3.3 * n), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        a = res.config.params
        t = res.t
        colors = _mode_colors(len(res.config.p0))
        pm, pp = parabola_fixed_points(a.eta, 1.0, a.sigma2)
        top = 1e-12
        for j, c in enumerate(colors):
            lbl = rf"$p_0$={res.config.p0[j]:g}"
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
        row[3].set_ylim(1e-12, 10 * top)
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


def matrix_figure(results: list[SimulationResult]) -> Figure:
    """One row per full-matrix or SGD run: spectra of F and sym(W_p), alignment, and the scalar diagnostics."""
    n = len(results)
    fig, axes = plt.subplots(n, 4, figsize=(17, 3.3 * n), squeeze=False)
    for row, res in zip(axes, results, strict=True):
        a = res.config.params
        t, d = res.t, res.series
        row[0].plot(t, d["s"])
        row[1].plot(t, d["p_sym"])
        row[2].plot(t, d["alignment"])
        for key, lbl in (("commutator", r"$\|[F, W_p]\|_F$"), ("asymmetry", "asymmetry of $W_p$"),
                         ("theorem1", "Thm 1 residual"), ("lambda_min_K", r"$\lambda_{min}(K)$ (abs)")):
            vals = np.abs(d[key])
            if np.all(np.isfinite(vals)) and np.any(vals > 0):
                row[3].semilogy(t, np.maximum(vals, 1e-16), label=lbl)
        row[0].set_title(r"eigenvalues $s_j$ of $F = WXW^T$" + "\n" + param_label(a)
                         + f", {res.config.model}, pred={a.predictor}", fontsize=9)
        row[1].set_title(r"eigenvalues of sym($W_p$)", fontsize=9)
        row[2].set_title(r"alignment cos($u_j$, $W_p u_j$)", fontsize=9)
        row[3].set_title("diagnostics", fontsize=9)
        row[3].legend(fontsize=7)
        for ax in row:
            ax.set_xlabel("t = step × α")
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

