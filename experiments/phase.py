"""The theory's phase diagram against a grid of real runs (issue 16): weight decay eta x the EMA rate beta, and
eta x the predictor's relative learning rate alpha_p.

Each grid cell is a real run of the trainer (the two-layer linear model on the synthetic data by default; digits
with ``dataset="digits"``), read off as ``compare`` reads a run (:func:`ssltheory.practice.studies.compare.compare_run`:
the mapping t = step x alpha, eta = wd, beta = (1 - gamma_a) / alpha, alpha_p as given) over its d modes, less those
the ODE does not answer for (under EMA with a trained predictor, a mode starting at p_j < 0: :func:`answered_modes`,
left out of run and theory alike and counted). The run and the decoupled ODE (Eqs. 11-13, integrated from the run's
own initial modes over the run's own time) each give an outcome by one rule, :func:`outcome`: a mode has collapsed
when s_j(T) < :data:`COLLAPSED_S` x max_j s_j(0) (and it shrank); a cell is ``collapsed`` when every mode has,
``partial`` when some have, ``healthy`` when none has. They agree when the outcomes are equal.

The figure colours each cell by the run's final leading p_j (the largest p of the modes that did not collapse; 0
when all did), marks the run's outcome, and draws over it the theory's boundary (where its predicted outcome turns
to collapse on a fine grid of eta, integrated from the same initial modes) and its contours of the predicted
leading p (with tau fixed at 1 these are p*_+ = (1 + sqrt(1 - 4 eta (1 + sigma^2))) / (2 (1 + sigma^2)) of Eq. 16;
with EMA, tau moves and the contour is the ODE's value at time T). The fixed-tau threshold
eta = tau^2 / (4 (1 + sigma^2)) at tau = 1 is drawn as a reference line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ssltheory.practice.config import TrainConfig
from ssltheory.theory import integrate, modes
from ssltheory.theory.checks import ConfigError, RunError
from ssltheory.theory.integrate import IntegrationError
from ssltheory.theory.io import save_figure, save_json

COLLAPSED_S = 1e-3
"""A mode has collapsed when its s_j at the end is below this fraction of the largest initial s_j."""
OUTCOMES = ("healthy", "partial", "collapsed")
AXES = {"beta": "EMA rate beta = (1 - gamma_a) / alpha", "alpha_p": "predictor lr ratio alpha_p"}
PHASE_BASE = {"dataset": "synthetic", "proj_dim": 16, "batch_size": 128, "synthetic_size": 1024, "epochs": 40,
              "lr": 0.1, "measure_every": 8, "knn_every": 0, "data_path": "device"}
"""The synthetic grid's runs: d = 16, 320 steps of lr 0.1 (ODE time T = 32, long enough for eta ~ 0.1 to decide)."""
DIGITS_BASE = {"dataset": "digits", "batch_size": 128, "epochs": 60, "lr": 0.03, "measure_every": 20,
               "knn_every": 0, "data_path": "device", "probe_size": 512}
"""The digits grid's runs: the small convnet, a linear predictor, lr 0.03 with momentum 0.9 (alpha = 0.3), 600 steps
(T = 180; sigma^2 = 0.5 assumed)."""


def collapsed_modes(s_end: np.ndarray, s_start: np.ndarray) -> np.ndarray:
    """Which modes collapsed: s_j(T) below :data:`COLLAPSED_S` x max_j s_j(0) and below its own s_j(0) (a mode that
    started that small and grew has not)."""
    s_end, s_start = np.asarray(s_end, float), np.asarray(s_start, float)
    return (s_end < COLLAPSED_S * float(np.max(s_start))) & (s_end < s_start)


def outcome(s_end: np.ndarray, s_start: np.ndarray) -> str:
    """``healthy`` | ``partial`` | ``collapsed`` of modes s_j(T) (M,) against the initial s_j(0) (M,)."""
    dead = collapsed_modes(s_end, s_start)
    return "collapsed" if dead.all() else "partial" if dead.any() else "healthy"


def leading_p(p_end: np.ndarray, s_end: np.ndarray, s_start: np.ndarray) -> float:
    """The largest final p_j among the modes that did not collapse (0 when all did)."""
    alive = ~collapsed_modes(s_end, s_start)
    return float(np.max(np.asarray(p_end)[alive])) if alive.any() else 0.0


def cell_settings(axis: str, eta: float, value: float, base: dict) -> dict:
    """A cell's settings: ``weight_decay`` eta and, for ``beta``, the EMA rate gamma_a = 1 - beta alpha (alpha = lr /
    (1 - momentum), the time per step of :mod:`ssltheory.practice.studies.compare`); for ``alpha_p``, SimSiam's target
    (no EMA: tau = 1) and the predictor lr ratio."""
    cfg = TrainConfig.from_settings(base)
    if axis == "beta":
        alpha = cfg.resolved_lr / (1.0 - cfg.resolved_momentum)
        gamma = 1.0 - value * alpha
        if not 0.0 <= gamma < 1.0:
            raise ConfigError(f"beta {value:g} needs gamma_a = 1 - beta alpha = {gamma:g}: expected beta in "
                              f"(0, {1 / alpha:g}] at lr {cfg.lr:g}")
        return {**base, "weight_decay": eta, "method": "byol", "gamma_a": gamma}
    if axis == "alpha_p":
        return {**base, "weight_decay": eta, "method": "simsiam", "alpha_p": value}
    raise ConfigError(f"axis {axis!r} is not accepted: expected one of {', '.join(AXES)}")


def cell_name(axis: str, eta: float, value: float) -> str:
    return f"eta{eta:g}-{axis}{value:g}"


@dataclass(frozen=True)
class PhaseDiagram:
    """A grid of runs over eta x ``axis`` (a recipe cell: :meth:`run` writes the runs, ``phase.json`` and
    ``phase.png`` into a folder)."""

    axis: str
    etas: tuple[float, ...]
    values: tuple[float, ...]
    base: dict[str, Any] = field(default_factory=lambda: dict(PHASE_BASE))
    trains = True  # run_recipe passes its trainer, --force and --max-steps (the grid is the same at every scale)

    def configs(self, max_steps: int = 0) -> dict[str, TrainConfig]:
        extra = {"max_steps": max_steps} if max_steps else {}
        return {cell_name(self.axis, e, v): TrainConfig.from_settings({**cell_settings(self.axis, e, v, self.base),
                                                                       **extra})
                for v in self.values for e in self.etas}

    def command_line(self) -> str:
        return (f"ssltheory experiment phase-diagram: {len(self.etas)} x {len(self.values)} runs of "
                f"{self.base['dataset']} over eta x {self.axis}")

    def run(self, out: Path, progress=None, trainer: Callable | None = None, force: bool = False,
            max_steps: int = 0, jobs: int = 1) -> dict:
        return run_phase(self, Path(out), trainer, force, max_steps, jobs, progress)


def run_phase(grid: PhaseDiagram, out: Path, trainer: Callable | None = None, force: bool = False,
              max_steps: int = 0, jobs: int = 1, progress=None) -> dict:
    """Run (or read) every cell of ``grid`` into ``out/CELL`` (a finished cell is read, an interrupted one resumed;
    ``force`` replaces cells of other settings; ``jobs`` > 1 trains them in that many processes first, see
    :mod:`.parallel`, with ``progress``'s bar over the runs), compare each with the ODE, draw the diagram."""
    from .cells import default_trainer, run_cell
    from .parallel import check_jobs, train_first

    configs = grid.configs(max_steps)
    check_jobs(jobs)
    if jobs > 1:
        train_first([(cfg, out / name) for name, cfg in configs.items()], jobs, force, progress, "phase diagram")
        force = False  # the processes replaced what --force names: now they are read
    cells, firsts = [], {}
    for name, cfg in configs.items():
        run_dir = out / name
        run_cell(cfg, run_dir, trainer or default_trainer, force)
        c = read_cell(run_dir, cfg)
        s0 = c.measured.s[0]
        row = {"cell": name, "eta": cfg.weight_decay, grid.axis: _axis_value(grid.axis, cfg, c),
               "run": outcome(c.measured.s[-1], s0), "p_lead_run": leading_p(c.measured.p[-1], c.measured.s[-1], s0),
               "T": float(c.measured.t[-1] - c.measured.t[0]), "modes": int(c.measured.p.shape[1]),
               "modes_left_out": c.left_out}
        if c.s_pred is None:  # the ODE itself failed from this run's modes (stiff, blown up): no theory answer
            row.update(theory="ODE failed", p_lead_theory=None, theory_error=c.error)
        else:
            row.update(theory=outcome(c.s_pred[-1], s0), p_lead_theory=leading_p(c.p_pred[-1], c.s_pred[-1], s0))
        row["agree"] = row["run"] == row["theory"]
        cells.append(row)
        firsts.setdefault(name.split("-", 1)[1], c)  # the row's first cell (configs go row by row)
    fine = theory_field(grid, list(firsts.values()), np.linspace(min(grid.etas) * 0.5, max(grid.etas) * 1.1, 60))
    first = next(iter(firsts.values()))
    agree = [c["agree"] for c in cells]
    sides = _within_one_step(grid, cells)
    doc = {"axis": grid.axis, "axis_label": AXES[grid.axis], "dataset": grid.base["dataset"], "etas": list(grid.etas),
           "values": list(grid.values), "sigma2": float(first.params.sigma2), "collapsed_s": COLLAPSED_S,
           "cells": cells, "agreement": float(np.mean(agree)),
           "disagree_beyond_one_step": [c["cell"] for c in cells if not c["agree"] and not sides[c["cell"]]],
           "theory_fine": fine,
           "reading": _reading(cells)}
    save_json(out / "phase.json", doc)
    save_figure(figure(doc), out / "phase.png")
    return doc


def _reading(cells: list[dict]) -> str:
    """The diagram's one-line summary: agreeing cells, ODE failures, modes left out."""
    agree = sum(c["agree"] for c in cells)
    failed = sum(c["theory"] == "ODE failed" for c in cells)
    left, kept = sum(c["modes_left_out"] for c in cells), sum(c["modes"] for c in cells)
    return (f"theory and run agree in {agree} of {len(cells)} cells"
            + (f" (the ODE failed from the modes of {failed} cells)" if failed else "")
            + (f"; modes starting at p_j < 0 under EMA left out of both: {left} of {left + kept} over the cells"
               if left else ""))


@dataclass
class CellReading:
    """A run's measured modes and the ODE's prediction from them (None where the ODE failed, with its message)."""

    measured: Any
    params: Any
    p_pred: np.ndarray | None
    s_pred: np.ndarray | None
    error: str | None = None
    left_out: int = 0


def answered_modes(meas, params) -> Any:
    """``meas`` restricted to the modes the decoupled ODE answers for, and how many were left out: under a dynamic
    EMA target with a trained predictor the modes whose first measured p_j is negative (Eq. 13's tau can blow up in
    finite time from there: :attr:`ssltheory.theory.params.ModeParams.needs_nonnegative_p0`); every mode otherwise,
    and every mode when none starts at p_j >= 0 (the ODE then answers or fails as it does).

    A run's records hold F̂'s spectrum sorted at each record, so a mode cannot be followed through time: the n kept
    modes are those with p_j >= 0 at the first record (where the ODE starts, in their rank order), and the n largest
    at every later record (a left-out weak mode that collapses sinks below them; the ODE follows each kept mode
    itself). The outcome then counts the same number of modes in run and theory."""
    if not params.needs_nonnegative_p0:
        return meas, 0
    keep = np.flatnonzero(np.asarray(meas.p[0]) >= 0)
    m, n = meas.p.shape[1], keep.size
    if n in (0, m):
        return meas, 0

    def cut(a: np.ndarray) -> np.ndarray:  # (K, M) -> (K, n): the kept modes first, the n largest after
        return np.concatenate([a[:1, keep], a[1:, :n]], axis=0)

    ranks = keep if meas.ranks is None else np.asarray(meas.ranks)[keep]
    return replace(meas, p=cut(meas.p), s=cut(meas.s), tau=None if meas.tau is None else cut(meas.tau),
                   ranks=ranks), int(m - n)


def read_cell(run_dir: Path, cfg: TrainConfig) -> CellReading:
    """``compare``'s reading of a run over its d modes (its mapping and its ODE) less those the ODE does not answer
    for (:func:`answered_modes`), tolerating an ODE that fails."""
    from ssltheory.practice.engine.rundir import RunDir
    from ssltheory.practice.studies.compare import measured_modes, ode_constants, predict

    sigma2 = cfg.sigma2 if cfg.dataset == "synthetic" else 0.5
    params, alpha = ode_constants(cfg, sigma2)
    meas, left_out = answered_modes(measured_modes(RunDir(run_dir).records(), alpha, sigma2, cfg.proj_dim), params)
    try:
        p_pred, s_pred, _ = predict(params, meas)
    except RunError as e:
        if getattr(e, "state", None) is None:
            return CellReading(meas, params, None, None, str(e), left_out)
        try:  # a guard stop: one mode at a time, those that collapsed before it counted as collapsed
            p_end, s_end = final_by_mode(params, meas)
        except RunError as e2:
            return CellReading(meas, params, None, None, str(e2), left_out)
        return CellReading(meas, params, p_end[None], s_end[None], left_out=left_out)
    return CellReading(meas, params, p_pred, s_pred, left_out=left_out)


def final_by_mode(params, meas) -> tuple[np.ndarray, np.ndarray]:
    """The ODE's final (p_j, s_j) (M,) from the first measurement, each mode integrated alone over the run's time.
    A mode whose state passes the integrator's guard (:data:`ssltheory.theory.integrate.BLOWUP`) after its s_j has
    collapsed by :func:`collapsed_modes` ends collapsed (s_j = 0): under EMA with eta > beta a collapsed mode's tau
    = W_a / W grows as e^{(eta - beta) t} (docs/theory.md), which says nothing more of s_j. A guard stop before
    that, or any other failure, is the cell's ODE failure (an IntegrationError)."""
    from ssltheory.practice.studies.compare import start_state

    y0 = start_state(params, meas)
    s0 = y0[1]
    T = float(meas.t[-1] - meas.t[0])
    field = modes.mode_field(params)
    p_end, s_end = np.empty(s0.shape), np.empty(s0.shape)
    stopped: dict[int, IntegrationError] = {}
    for j in range(s0.size):
        try:
            y = integrate.ode(field, y0[:, j:j + 1], T, method="RK45", samples=2, rtol=1e-8, atol=1e-11).y[-1]
        except IntegrationError as e:
            if e.state is None:
                raise
            stopped[j], y = e, e.state
        p_end[j], s_end[j] = modes.effective_p(y[0], y[1], params)[0], y[1][0]
    if stopped:
        idx = np.array(sorted(stopped))
        dead = collapsed_modes(s_end, s0)[idx]
        if not dead.all():
            raise stopped[int(idx[~dead][0])]
        s_end[idx] = 0.0
    return p_end, s_end


def _axis_value(axis: str, cfg: TrainConfig, c) -> float:
    return float(c.params.beta) if axis == "beta" else float(cfg.alpha_p)


def theory_field(grid: PhaseDiagram, firsts: list, etas: np.ndarray) -> dict:
    """The ODE's outcome and leading p at time T over a fine grid of eta (x the grid's values); row k starts from the
    first measured modes of ``firsts[k]``, the comparison of that row's first cell (the linear model records its
    step-0 modes, the same weights for every cell of one seed; an image network's first record is after
    ``measure_every`` steps of that cell's own settings)."""
    from ssltheory.practice.studies.compare import start_state

    lead, where = [], []
    for v, c in zip(grid.values, firsts, strict=True):
        s0 = c.measured.s[0]
        T = float(c.measured.t[-1] - c.measured.t[0])
        row_p, row_o = [], []
        for eta in etas:
            params = c.params.replace(eta=float(eta), eta_p=float(eta) * (c.params.alpha_p if grid.axis == "beta"
                                                                          else v),
                                      **({"beta": float(v)} if grid.axis == "beta" else {"alpha_p": float(v)}))
            try:
                tr = integrate.ode(modes.mode_field(params), start_state(params, c.measured), T, method="RK45",
                                   samples=2, rtol=1e-7, atol=1e-10)
            except RunError:  # no answer at this eta (drawn as a gap)
                row_p.append(float("nan"))
                row_o.append(-1)
                continue
            p_end, s_end = modes.effective_p(tr.y[-1, 0], tr.y[-1, 1], params), tr.y[-1, 1]
            row_p.append(leading_p(p_end, s_end, s0))
            row_o.append(OUTCOMES.index(outcome(s_end, s0)))
        lead.append(row_p)
        where.append(row_o)
    return {"etas": etas.tolist(), "p_lead": lead, "outcome_index": where, "outcomes": list(OUTCOMES)}


def _within_one_step(grid: PhaseDiagram, cells: list[dict]) -> dict[str, bool]:
    """Whether each cell lies within one grid step in eta of a change of the theory's outcome along its row."""
    out = {}
    for v in grid.values:
        row = [c for c in cells if c["cell"].endswith(f"-{grid.axis}{v:g}")]
        row.sort(key=lambda c: c["eta"])
        for i, c in enumerate(row):
            near = row[max(0, i - 1): i + 2]
            out[c["cell"]] = len({n["theory"] for n in near}) > 1
    return out


def figure(doc: dict):
    """The diagram: cells coloured by the run's final leading p, markers by the run's outcome, the theory's
    boundary (fine grid) and contours of its leading p, and the fixed-tau threshold at tau = 1."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 6.2), layout="constrained")
    ax = fig.subplots()
    values, axis = doc["values"], doc["axis"]
    ys = {v: i for i, v in enumerate(values)}
    etas = np.asarray(doc["etas"], float)
    cmap = matplotlib.colormaps["viridis"]
    norm = matplotlib.colors.Normalize(0, max(0.7, max(c["p_lead_run"] for c in doc["cells"])))
    half = np.diff(etas) / 2 if len(etas) > 1 else np.array([0.05])
    edges = np.concatenate([[etas[0] - half[0]], etas[:-1] + half, [etas[-1] + half[-1]]])  # cells touch
    for c in doc["cells"]:
        y, k = ys[_nearest(values, c, axis)], int(np.argmin(np.abs(etas - c["eta"])))
        ax.add_patch(matplotlib.patches.Rectangle((edges[k], y - 0.5), edges[k + 1] - edges[k], 1,
                                                  color=cmap(norm(c["p_lead_run"]))))
        marker = {"healthy": "o", "partial": "s", "collapsed": "X"}[c["run"]]
        colour = "white" if c["agree"] else "0.6" if c["theory"] == "ODE failed" else "red"
        ax.scatter([c["eta"]], [y], marker=marker, color=colour, edgecolor="k", s=60, zorder=4)
    fine = doc["theory_fine"]
    fx = np.asarray(fine["etas"])
    yy = np.arange(len(values))
    if len(values) > 1:
        grid_p = np.array([[np.nan if v is None else v for v in row] for row in fine["p_lead"]], float)  # JSON: null
        cs = ax.contour(fx, yy, grid_p, levels=[0.2, 0.4, 0.5, 0.6], colors="w", linewidths=0.8,
                        linestyles=":")
        ax.clabel(cs, fontsize=7, fmt="p %.1f")
    for i, row in enumerate(fine["outcome_index"]):  # the theory's boundary: first eta of a worse outcome, per row
        row = np.asarray(row)
        for k in range(1, len(row)):
            if row[k] > row[k - 1] >= 0:  # towards collapse (a change back is not a boundary of this kind)
                ax.plot([fx[k], fx[k]], [i - 0.5, i + 0.5], color="orange" if row[k] == 1 else "red", lw=2.2)
    ax.axvline(1 / (4 * (1 + doc["sigma2"])), color="k", ls="--", lw=1,
               label=f"fixed-tau threshold at tau = 1: eta = 1/(4(1+σ²)) = {1 / (4 * (1 + doc['sigma2'])):.3f}")
    ax.plot([], [], color="orange", lw=2.2, label="theory: some modes collapse from here (ODE, same init)")
    ax.plot([], [], color="red", lw=2.2, label="theory: every mode collapses from here")
    for name, m in (("healthy", "o"), ("partial", "s"), ("collapsed", "X")):
        ax.scatter([], [], marker=m, color="white", edgecolor="k", label=f"run: {name}")
    ax.scatter([], [], marker="o", color="red", edgecolor="k", label="run disagrees with theory")
    ax.scatter([], [], marker="o", color="0.6", edgecolor="k", label="the ODE failed from the run's modes")
    ax.set_yticks(yy, [f"{v:g}" for v in values])
    ax.set(xlim=(min(fx[0], edges[0]), max(fx[-1], edges[-1])), ylim=(-0.5, len(values) - 0.5),
           xlabel="weight decay eta",
           ylabel=doc["axis_label"], title=f"phase diagram on {doc['dataset']} (colour: the run's final leading p)"
                                           f"\n{textwrap.fill(doc['reading'], 110)}")
    ax.title.set_fontsize(9)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="run: final leading p_j")
    fig.legend(fontsize=7, loc="outside lower center", ncols=3)
    return fig


def _nearest(values, cell: dict, axis: str) -> float:
    return min(values, key=lambda v: abs(v - cell[axis]))


def digits(grid: PhaseDiagram) -> PhaseDiagram:
    """The same grid on digits (the small convnet, a linear predictor; sigma^2 = 0.5 assumed by compare)."""
    return replace(grid, base=dict(DIGITS_BASE))
