"""Label-free forecasting (Li, Efros & Pathak 2022; collapse.md B2): does the collapse AUC, measured without labels,
rank runs by their downstream accuracy?

For each training run: its offline collapse AUC and k_eq (the paper's protocol, :func:`.collapse.run_spectrum`: the
whole train split through the eval transform, centred, sigma not sigma^2) and its linear-probe accuracy
(:func:`..measure.evaluate.probe_run`, the last probe epoch's; kNN accuracy from the run's summary beside it). Across
runs: Spearman's rank correlation of AUC with probe accuracy (``scipy.stats.spearmanr``; the paper reads a higher AUC as
more collapse, so a forecast is a **negative** correlation) and Pearson's r, as ``forecast.json`` / ``forecast.csv`` and
the scatter ``forecast.png``. The paper does not say which statistic it used or its value (collapse.md B2,
[UNVERIFIED]); we report both.

A run's point is cached in its folder as ``forecast_point.json`` and reused while its checkpoint's step and the
probe settings are unchanged.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

from ssltheory.theory.checks import ConfigError, RunError
from ssltheory.theory.io import make_out_dir, save_figure, save_json, write_atomic

POINT = "forecast_point.json"
"""A run's cached point (AUC, k_eq, probe accuracy) in its folder."""
PROBE_DEFAULTS = {"epochs": 50, "lr": 3e-4, "weight_decay": 1e-3, "batch_size": 128}
"""The linear probe's settings (the DirectPred protocol of :mod:`..measure.evaluate`)."""
MIN_RUNS = 3
"""A rank correlation needs at least three runs."""
EXACT_RUNS = 8
"""Up to this many runs Spearman's p-value is exact (every pairing of the ranks); above it, scipy's t approximation,
which overstates significance on a handful of runs (a perfect order of 4 runs reads p = 0 there, exactly 0.083)."""


def run_point(run_dir: Path | str, device: torch.device, *, group: str = "", probe: dict | None = None,
              on_progress: Callable[[str], None] | None = None, data_dir: str | None = None) -> dict:
    """One run's point: ``{run, group, step, auc, k_eq, d, n, probe_acc, knn_acc}`` (AUC and k_eq of the paper's
    offline protocol; ``probe_acc`` the linear probe's last-epoch test accuracy in [0, 1]; ``knn_acc`` the run's
    final kNN accuracy from summary.json, or None). Read from the run's ``forecast_point.json`` when its step, probe
    settings and run config match (a run replaced with --force also clears it), else measured and cached there.
    ``data_dir`` replaces the run's own ``--data-dir`` (a run moved to another machine)."""
    from ssltheory.practice.data.registry import DATASETS
    from ssltheory.practice.engine.rundir import RunDir, check_run_dir, load_run
    from ssltheory.practice.measure.evaluate import extract, linear_probe
    from ssltheory.practice.measure.quantities import collapse_auc

    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    settings = {**PROBE_DEFAULTS, **(probe or {})}
    folder = RunDir(run_dir)
    config = folder.config()
    if DATASETS[config.dataset].linear:
        labelled = [n for n, s in DATASETS.items() if not s.linear]
        raise ConfigError(f"RUN_DIR {run_dir} was trained on {config.dataset}, which has no labels: expected a run on "
                          f"{', '.join(labelled)}")
    cached = read_point(run_dir / POINT)
    state_step = _checkpoint_step(folder)
    if cached is not None and cached.get("step") == state_step and cached.get("probe") == settings and \
            cached.get("config") == config.to_dict():
        return {**_public(cached), "run": str(run_dir), "group": group}
    if on_progress is not None:
        on_progress(f"spectrum and probe of {run_dir}")
    _, data, model, step = load_run(run_dir, device, data_dir)  # one load, one pass over the train split for both
    train_x, train_y = extract(model.online.backbone, data.train_eval, device)
    test_x, test_y = extract(model.online.backbone, data.test_eval, device)
    m = collapse_auc(train_x)  # the offline protocol of .collapse.run_spectrum (whole train split, centred, sigma)
    res = linear_probe(train_x, train_y, test_x, test_y, **settings)  # .evaluate.probe_run's probe
    summary = read_point(run_dir / "summary.json") or {}
    point = {"step": step, "auc": float(m["auc"]), "k_eq": float(m["k_eq"]), "d": int(train_x.shape[1]),
             "n": int(train_x.shape[0]), "probe_acc": float(res["test_acc"]), "knn_acc": summary.get("knn_acc_final"),
             "probe": settings, "config": config.to_dict()}
    try:
        save_json(run_dir / POINT, point)
    except OSError:
        pass  # a read-only run folder: the point is still returned
    return {**_public(point), "run": str(run_dir), "group": group}


def _public(point: dict) -> dict:
    """A cached point without the run's config (kept in the cache to key it, not repeated in forecast.json)."""
    return {k: v for k, v in point.items() if k != "config"}


def read_point(path: Path) -> dict | None:
    """A JSON file of a run's (``forecast_point.json``, ``summary.json``), None when it is missing or damaged."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _checkpoint_step(folder) -> int | None:
    state = folder.load_checkpoint()
    return None if state is None else int(state["step"])


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rank correlation of ``x`` with ``y`` (N,) and its two-sided p-value: exact up to
    :data:`EXACT_RUNS` points (``scipy.stats.permutation_test`` over every pairing, ties ranked as averages), scipy's
    approximation above. Callers check that both vary (rho is undefined otherwise)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = float(stats.spearmanr(x, y).statistic)
    if len(x) > EXACT_RUNS:
        return rho, float(stats.spearmanr(x, y).pvalue)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    ry = (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())

    def statistic(r: np.ndarray, axis: int = -1) -> np.ndarray:  # Pearson of the permuted ranks with y's
        r = r - r.mean(axis=axis, keepdims=True)
        return (r * ry).sum(axis=axis) / np.linalg.norm(r, axis=axis)

    res = stats.permutation_test((rx,), statistic, permutation_type="pairings", vectorized=True, n_resamples=np.inf)
    return rho, float(min(1.0, res.pvalue))


def correlate(points: Sequence[dict]) -> dict:
    """Across runs: ``{n, spearman_rho, spearman_p, pearson_r, pearson_p, forecasts, reading}``; ``forecasts`` is
    True when the rank correlation of AUC with probe accuracy is negative at p < 0.05 (more collapse, lower
    accuracy). A one-line error with fewer than :data:`MIN_RUNS` runs or when every AUC or every accuracy is equal."""
    auc = np.array([p["auc"] for p in points], float)
    acc = np.array([p["probe_acc"] for p in points], float)
    if len(points) < MIN_RUNS:
        raise ConfigError(f"{len(points)} runs cannot be correlated: expected at least {MIN_RUNS} run folders")
    if np.ptp(auc) == 0 or np.ptp(acc) == 0:
        what = "AUC" if np.ptp(auc) == 0 else "probe accuracy"
        raise ConfigError(f"every run has the same {what}: a rank correlation is undefined; expected runs that "
                          "differ (data fraction, width, schedule)")
    rho, rho_p = spearman(auc, acc)
    r, r_p = stats.pearsonr(auc, acc)
    forecasts = bool(rho < 0 and rho_p < 0.05)
    reading = (f"Spearman rho = {rho:+.2f} (p = {rho_p:.2g}) over {len(points)} runs: "
               + ("a higher AUC (more collapse) ranks runs by lower probe accuracy, as the paper forecasts"
                  if forecasts else "no significant negative rank correlation: the AUC does not forecast the probe "
                  "accuracy across these runs"))
    return {"n": len(points), "spearman_rho": float(rho), "spearman_p": float(rho_p), "pearson_r": float(r),
            "pearson_p": float(r_p), "forecasts": forecasts, "reading": reading}


def forecast(points: Sequence[dict], settings: dict | None = None) -> dict:
    """forecast.json: the points, their correlation over all runs (:func:`correlate`) and within each group of at
    least :data:`MIN_RUNS` runs (``by_group``). Within a group is the forecast the paper makes (one architecture,
    one feature width d, runs that differ in data and schedule); across groups of different d the AUC's range
    [(d+1)/(2d), 1] itself moves, so the pooled number mixes that in."""
    groups = dict.fromkeys(p["group"] for p in points)
    by_group = {}
    for g in groups:
        mine = [p for p in points if p["group"] == g]
        try:
            by_group[g] = correlate(mine)
        except ConfigError as e:  # too few runs or no spread in this group
            by_group[g] = {"n": len(mine), "reading": str(e)}
    return {"description": "label-free forecasting (collapse.md B2): the offline collapse AUC (higher = more "
                           "collapsed) of each run against its linear-probe accuracy (last probe epoch)",
            "settings": settings or {}, "correlation": correlate(points), "by_group": by_group,
            "runs": list(points)}


def figure(doc: dict) -> Figure:
    """AUC (x) against probe accuracy (y), one colour per group, each point named; the correlation in the title."""
    fig = Figure(figsize=(7.2, 5.0), layout="constrained")
    ax = fig.subplots()
    groups = list(dict.fromkeys(p["group"] for p in doc["runs"]))
    colours = matplotlib.colormaps["tab10"]
    for i, g in enumerate(groups):
        pts = [p for p in doc["runs"] if p["group"] == g]
        ax.scatter([p["auc"] for p in pts], [100 * p["probe_acc"] for p in pts], color=colours(i % 10),
                   label=g or "runs", zorder=3)
        for p in pts:
            ax.annotate(point_label(p), (p["auc"], 100 * p["probe_acc"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    ax.set(xlabel="collapse AUC (offline, paper protocol; higher = more collapsed)",
           ylabel="linear-probe accuracy (%)", title="label-free forecast\n" + "\n".join(title_lines(doc)))
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    if len(groups) > 1 or groups[0]:
        ax.legend(fontsize=7)
    return fig


def title_lines(doc: dict) -> list[str]:
    """The correlation lines of forecast.png's title. With one group: its Spearman rho and p (and Pearson r). With
    several (model sizes): each group's rho and p first, the forecast the paper makes within one architecture and
    feature width; the pooled rho last and named as such, since across widths d the AUC's range [(d+1)/(2d), 1]
    moves and the pooled number mixes that in (a group of too few runs, or without spread, says why it has none)."""
    c = doc["correlation"]
    groups = list(dict.fromkeys(p["group"] for p in doc["runs"]))
    if len(groups) <= 1:
        return [f"all {c['n']} runs: Spearman ρ = {c['spearman_rho']:+.2f} (p = {c['spearman_p']:.2g}), Pearson r = "
                f"{c['pearson_r']:+.2f}"]
    lines = []
    for g, b in doc.get("by_group", {}).items():
        lines.append(f"{g}: Spearman ρ = {b['spearman_rho']:+.2f} (p = {b['spearman_p']:.2g}, {b['n']} runs)"
                     if "spearman_rho" in b else f"{g}: no correlation ({b['n']} runs)")
    lines.append(f"(pooled over {len(groups)} sizes, not a forecast: ρ = {c['spearman_rho']:+.2f}, "
                 f"p = {c['spearman_p']:.2g})")
    return lines


def point_label(p: dict) -> str:
    """A point's name in the figure: its recipe cell (and seed folder), else its run folder's name."""
    name = Path(p["run"]).name
    return f"{p['cell']}/{name}" if p.get("cell") and name != p["cell"] else p.get("cell") or name


def csv_text(doc: dict) -> str:
    """forecast.csv: one row per run."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "group", "step", "auc", "k_eq", "d", "n", "probe_acc", "knn_acc"])
    for p in doc["runs"]:
        w.writerow([p["run"], p["group"], p["step"], f"{p['auc']:.6g}", f"{p['k_eq']:.6g}", p["d"], p["n"],
                    f"{p['probe_acc']:.6g}", "" if p.get("knn_acc") is None else f"{p['knn_acc']:.6g}"])
    return buf.getvalue()


def write_results(out: Path | str, doc: dict) -> list[Path]:
    """forecast.png, forecast.json and forecast.csv into ``out`` (created); a failed write is a RunError."""
    folder = make_out_dir(out)
    try:
        paths = [save_figure(figure(doc), folder / "forecast.png"), save_json(folder / "forecast.json", doc)]
        write_atomic(folder / "forecast.csv", csv_text(doc).encode())
    except OSError as e:
        raise RunError(f"writing into --out {out} failed: {e.strerror or e}") from None
    return [*paths, folder / "forecast.csv"]
