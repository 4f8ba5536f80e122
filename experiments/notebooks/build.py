"""Build the notebooks of this folder from the cells below, without outputs: ``python experiments/notebooks/build.py``
(``--check``: exit 1 when a committed notebook differs from what this script builds).

One notebook per paper, each the theory's figures and a small training run on bundled data (sklearn's digits or the
theory's synthetic data), through the Python API of ``docs/api.md``. They write their runs into ``runs/notebooks/``
under the folder they are run from. ``tests/test_notebooks.py`` executes all three top to bottom (nbclient) and checks
that the committed files are this script's output, with no outputs stored.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import matplotlib.pyplot as plt
import numpy as np"""

DIRECTPRED = [
    new_markdown_cell("""\
# DirectPred: the two-layer linear model of Tian, Chen & Ganguli (2021)

*Understanding self-supervised learning dynamics without contrastive pairs.* The theory's figures from its ODEs
(`ssltheory.theory`), then a small BYOL run with DirectPred's predictor on sklearn's digits whose eigenvalues are
measured as it trains (`ssltheory.practice`). Reference: `docs/theory.md`, `docs/api.md`."""),
    new_code_cell(SETUP + """

from ssltheory.practice import TrainConfig, compare_run, load_metrics, train
from ssltheory.theory import (
    ModeParams,
    collapse_threshold,
    draw_phase_portrait,
    find_fixed_points,
    integrate_modes,
    parabola_fixed_points,
)
"""),
    new_markdown_cell("""\
## Fig. 3: the phase portrait of one mode (p_j, s_j) at fixed τ = 1

Without weight decay every start settles on a line of fixed points; with a little decay the invariant parabola
s = p²/α_p carries the modes to the stable p*₊ or, below the saddle p*₋, to collapse; with too much, everything
collapses."""),
    new_code_cell("""\
fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
for ax, eta in zip(axes, (0.0, 0.01, 1.0), strict=True):
    draw_phase_portrait(ax, ModeParams(eta=eta, ema=False), tau=1.0)
fig.tight_layout()"""),
    new_code_cell("""\
for fp in find_fixed_points(ModeParams(eta=0.01), tau=1.0):
    print(f"p = {fp.p:.4f}   s = {fp.s:.4f}   {fp.kind}")
print("p*_-, p*_+ =", parabola_fixed_points(eta=0.01, tau=1.0, sigma2=0.5))
print("collapse threshold on eta:", collapse_threshold(tau=1.0, sigma2=0.5))"""),
    new_markdown_cell("""\
## Fig. 5: the decoupled modes under EMA, three weight decays

β = 0.4, σ² = 0.5, from five initial predictor eigenvalues p₀; integrated with `solve_ivp` (rk45) to t = 1000."""),
    new_code_cell("""\
p0 = [0.01, 0.05, 0.1, 0.2, 0.3]
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), sharey=True)
for ax, eta in zip(axes, (0.0, 0.04, 0.1), strict=True):
    res = integrate_modes(ModeParams(eta=eta), p0=p0, steps=100_000, integrator="rk45")
    ax.plot(res.t, res.series["p"])
    ax.set(xscale="symlog", xlabel="t", title=f"eta = {eta}: " + ", ".join(o[:9] for o in res.summary["outcome"]))
axes[0].set_ylabel("p_j")
axes[0].legend([f"p0 = {p}" for p in p0], fontsize=8)
fig.tight_layout()"""),
    new_markdown_cell("""\
## A small run on digits: BYOL with DirectPred's predictor

20 steps on CPU (a real run is `ssltheory train digits --predictor directpred`, 100 epochs). Every 5 steps the
trainer measures the eigenvalues s_j of the running correlation F̂ of the predictor's input and p_j of the
predictor W_p, which DirectPred sets to sqrt(s_j / max s) + ε."""),
    new_code_cell("""\
cfg = TrainConfig(dataset="digits", predictor="directpred", batch_size=64, max_steps=20, measure_every=5)
summary = train(cfg, "runs/notebooks/directpred-digits", force=True)
print({k: summary[k] for k in ("knn_acc_init", "knn_acc_final", "probe_auc")})"""),
    new_code_cell("""\
m = load_metrics("runs/notebooks/directpred-digits")
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
a.semilogy(m["step"], m["s"][:, :8], marker="o")
a.set(xlabel="step", title="eigenvalues s_j of F̂ (8 leading)")
b.plot(m["step"], m["p_sym"][:, :8], marker="o")
b.plot(m["step"], np.sqrt(m["s"][:, :8] / m["s"][:, :1]) + cfg.eps, "k:", lw=0.8)
b.set(xlabel="step", title="eigenvalues p_j of W_p (dotted: sqrt(s_j / s_1) + eps)")
fig.tight_layout()"""),
    new_markdown_cell("""\
## The theory beside the run

`compare_run` maps the run's settings to the ODE's constants and integrates the modes from the first measurement.
On a real network the assumptions of the linear model do not hold (cosine loss, projector, momentum), and it says
which."""),
    new_code_cell("""\
c = compare_run("runs/notebooks/directpred-digits", n_modes=4)
print("final p_j off by", round(c.agreement["p"]["max_final_rel_err"], 3))
for a in c.assumptions:
    print("holds " if a["holds"] else "fails ", a["assumption"])"""),
]

UNIGRAD = [
    new_markdown_cell("""\
# UniGrad: the Siamese family as one gradient (Tao et al. 2022)

Every Siamese method's gradient on the normalised output is `-u2 + λ G_neg(u1)`. In the theory's linear model
(`ssltheory.theory.unified`) the unified forms have a mode flow of their own: every mode goes to the same s*
(whitening), and they collapse only beyond η = 1. Then a small UniGrad run of the linear network beside that flow.
Reference: `docs/unigrad.md`, `docs/api.md`."""),
    new_code_cell(SETUP + """

from ssltheory.practice import TrainConfig, compare_figure, compare_run, load_metrics, train
from ssltheory.theory import (
    UnifiedParams,
    collapse_threshold,
    draw_unified_portrait,
    find_unified_fixed_points,
    integrate_unified,
)
"""),
    new_markdown_cell("""\
## The whitened fixed point s* of each form against weight decay, and BYOL's threshold"""),
    new_code_cell("""\
etas = np.linspace(0, 1.2, 61)
fig, ax = plt.subplots(figsize=(6.5, 4))
for form in ("unigrad", "vicreg", "barlowtwins", "simclr"):
    ax.plot(etas, [UnifiedParams(form=form, lam=1.0, eta=e).s_star for e in etas], label=form)
ax.axvline(collapse_threshold(tau=1.0, sigma2=0.5), color="k", ls=":", label="BYOL's collapse threshold")
ax.set(xlabel="weight decay eta", ylabel="s*", title="every unified form whitens; it collapses only at eta >= 1")
ax.legend(fontsize=8);"""),
    new_markdown_cell("""\
## The modes of UniGrad's form from five starts, and its (s_j, τ_j) plane"""),
    new_code_cell("""\
unigrad = UnifiedParams(form="unigrad", lam=2.0, eta=0.1)
res = integrate_unified(unigrad, s0=[0.01, 0.1, 0.5, 1.0, 2.0], steps=3_000)
fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
a.plot(res.t, res.series["s"])
a.axhline(unigrad.s_star, color="k", ls="--", label="s* = (1 - eta) / (lam (1 + sigma^2)^2)")
a.set(xlabel="t", ylabel="s_j", title="every mode to the same s*")
a.legend(fontsize=8)
draw_unified_portrait(b, unigrad)
fig.tight_layout()
for fp in find_unified_fixed_points(unigrad):
    print(f"s = {fp.s:.4f}  tau = {fp.tau:.3f}  {fp.kind}")"""),
    new_code_cell("""\
barlow = integrate_unified(UnifiedParams(form="barlowtwins", lam=2.0, eta=0.1), model="matrix", dim=6, steps=3_000)
plt.figure(figsize=(6, 3.5))
plt.plot(barlow.t, barlow.series["s"])
plt.gca().set(xlabel="t", ylabel="eigenvalues of W Wᵀ",
              title="Barlow Twins (h), full matrices: s* = (1 - eta) / lam");"""),
    new_markdown_cell("""\
## A small UniGrad run of the linear network beside the flow

The trainer runs the form on the linear model's raw outputs (`dataset="synthetic"`, d = 8, F of each batch with
`f_rho=0`); `compare_run` reads the run against (U3)-(U4). 80 steps here; the tested claim (final s_j within 5%)
is at 640 (`docs/unigrad.md`)."""),
    new_code_cell("""\
cfg = TrainConfig(dataset="synthetic", method="unigrad", proj_dim=8, batch_size=256, f_rho=0.0, max_steps=80,
                  measure_every=10)
train(cfg, "runs/notebooks/unigrad-linear", force=True)
c = compare_run("runs/notebooks/unigrad-linear")
print("s* =", round(c.params.s_star, 4))
print("final s_j / s* (median):", round(c.qualitative["s_final_over_s_star_median"], 3))
print("final s_j off by at most", round(c.agreement["s"]["max_final_rel_err"], 3))
compare_figure([c]);"""),
    new_code_cell("""\
m = load_metrics("runs/notebooks/unigrad-linear")
print({k: np.round(m[k][-1], 3) for k in ("positive_cosine", "negative_cosine", "decorrelation") if k in m})"""),
]

COLLAPSE = [
    new_markdown_cell("""\
# Dimensional collapse: Li, Efros & Pathak (2022)

The collapse metric is the area under the cumulative curve of the singular values of centred features: near
(m + 1) / (2m) when every direction is used, 1 when all features lie on one line; k_eq = 1 + 2m(1 − AUC) counts the
directions in use. The trainer measures it live on a fixed probe subset (`probe_auc`); `run_spectrum` measures a
finished run's backbone on the whole train split (`ssltheory collapse`). Reference: `docs/collapse.md`."""),
    new_code_cell(SETUP + """
import torch

from ssltheory.practice import TrainConfig, collapse_auc, load_metrics, run_spectrum, spectrum_auc, train
"""),
    new_markdown_cell("## The metric on features whose rank we choose"),
    new_code_cell("""\
rng = np.random.default_rng(0)
n, d = 1000, 64
fig, ax = plt.subplots(figsize=(6.5, 4))
for k in (64, 16, 4, 1):
    x = rng.standard_normal((n, k)) @ rng.standard_normal((k, d))
    r = collapse_auc(x)
    ax.plot(np.arange(1, d + 1), r["cumulative"], label=f"rank {k}: AUC {r['auc']:.3f}, k_eq {r['k_eq']:.1f}")
ax.set(xlabel="k", ylabel="share of the first k singular values", title=f"{n} samples x {d} features")
ax.legend(fontsize=8);"""),
    new_markdown_cell("""\
## A small run on digits, and a collapsing one

SimSiam with its stop-gradient, and without it (Theorem 2 of DirectPred: the weights collapse), 16 steps each on
CPU. In its first steps every run contracts the spread of its random init (the collapse warning waits an epoch for
this reason, `docs/collapse.md`); without the stop-gradient the spread and s₂/s₁ of F̂ fall several times further."""),
    new_code_cell("""\
runs = {"simsiam": TrainConfig(dataset="digits", method="simsiam", batch_size=64, max_steps=16, measure_every=4),
        "simsiam, no stop-grad": TrainConfig(dataset="digits", method="simsiam", stop_grad=False, batch_size=64,
                                             max_steps=16, measure_every=4, lr=0.1)}
for name, cfg in runs.items():
    train(cfg, f"runs/notebooks/collapse-{name.replace(', ', '-').replace(' ', '')}", force=True)"""),
    new_code_cell("""\
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
for name in runs:
    m = load_metrics(f"runs/notebooks/collapse-{name.replace(', ', '-').replace(' ', '')}")
    axes[0].plot(m["step"], m["probe_auc"], marker="o", label=name)
    axes[1].plot(m["step"], m["feature_std_x_sqrt_d"], marker="o", label=name)
    axes[2].semilogy(m["step"], m["s"][:, 1] / m["s"][:, 0], marker="o", label=name)
axes[0].set(xlabel="step", title="live collapse AUC of the backbone (probe subset)")
axes[1].set(xlabel="step", title="spread of the projector output: std x sqrt(d)")
axes[2].set(xlabel="step", title="s_2 / s_1 of F̂")
axes[0].legend(fontsize=8)
fig.tight_layout()"""),
    new_markdown_cell("## The spectrum of the backbone on the whole train split (`ssltheory collapse`)"),
    new_code_cell("""\
spectrum = run_spectrum("runs/notebooks/collapse-simsiam", torch.device("cpu"))
metrics = spectrum_auc(spectrum.sigma)
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
a.semilogy(spectrum.sigma / spectrum.sigma[0])
a.set(xlabel="i", ylabel="sigma_i / sigma_1", title=f"{spectrum.n} images x {spectrum.dim} features")
b.plot(np.arange(1, len(spectrum.sigma) + 1), metrics["cumulative"])
b.set(xlabel="k", ylabel="cumulative share", title=f"AUC {metrics['auc']:.3f}, k_eq {metrics['k_eq']:.1f}")
fig.tight_layout()"""),
]

NOTEBOOKS = {"directpred.ipynb": DIRECTPRED, "unigrad.ipynb": UNIGRAD, "collapse.ipynb": COLLAPSE}
"""Every notebook of this folder and its cells."""


def build(cells: list) -> nbformat.NotebookNode:
    """A notebook of ``cells``, no outputs, the python3 kernel; cell ids numbered so that a rebuild is identical."""
    nb = new_notebook(cells=[nbformat.from_dict(c) for c in cells])
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    return nb


def text(name: str) -> str:
    """The file ``name`` as this script writes it."""
    return nbformat.writes(build(NOTEBOOKS[name])) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name in NOTEBOOKS:
        path = HERE / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text(name):
                stale.append(name)
        else:
            path.write_text(text(name))
            print(f"wrote {path}")
    if stale:
        print(f"not as build.py makes them: {', '.join(stale)} (run python experiments/notebooks/build.py)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
