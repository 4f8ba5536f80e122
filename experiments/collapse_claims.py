"""The collapse paper's three claims read off a study's runs, with verdicts (Li, Efros & Pathak 2022).

Each run is a point ``{group, cell, seed, fraction, schedule, auc, probe_acc}`` (``auc``: its offline collapse AUC,
higher = more collapsed; ``probe_acc``: its linear probe's accuracy in [0, 1]; ``schedule``: ``iid`` / ``last`` for a
fixed fraction of the data, ``current`` / ``accumulate`` for a continual stream, ``hybrid`` for a stream that turns
IID; ``group``: the model size, ``small`` or ``large`` in the study's recipes).

1. **More data, more collapse for the small model** (``data``): within each size, Spearman's rank correlation of the
   AUC with the train fraction over the fixed-fraction runs, every seed a point. The small model: **shows** if
   rho > 0 at p < :data:`ALPHA`, **opposite** if rho < 0 at p < :data:`ALPHA`, **absent** otherwise. The large model
   (the paper: its AUC does not rise): **shows** unless rho > 0 at p < :data:`ALPHA` (then **opposite**).
2. **Continual and hybrid training reduce the small model's collapse** (``schedules``): each stream run against the
   same size's fixed-fraction run on the most data at the same steps: ΔAUC = mean(stream) - mean(IID), its spread
   sd = sqrt(std_stream^2 + std_IID^2) over seeds (the rule of :mod:`.fidelity`). **shows** if ΔAUC < 0 and
   |ΔAUC| > 2 sd, **opposite** if ΔAUC > 0 beyond 2 sd, **absent** otherwise; the same rule on the probe accuracy
   for the paper's accuracy gain (the hybrid's +18 points on ImageNet), with Δ > 0 the paper's direction.
3. **The AUC forecasts accuracy** (``forecast``): within each size, the rank correlation of AUC with probe accuracy
   (:func:`ssltheory.practice.studies.forecast.correlate`): **shows** if negative at p < 0.05, **opposite** if
   positive at p < 0.05, **absent** otherwise.

A verdict needs :data:`~.fidelity.MIN_SEEDS` seeds per compared cell for the schedules, and
:data:`~ssltheory.practice.studies.forecast.MIN_RUNS` runs with some spread for a correlation (Spearman's p exact up
to :data:`~ssltheory.practice.studies.forecast.EXACT_RUNS` runs: :func:`~ssltheory.practice.studies.forecast.spearman`);
otherwise it reads ``n/a`` with the reason. A run without a finite AUC or probe accuracy counts as no run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ssltheory.practice.studies.forecast import MIN_RUNS, spearman

from .fidelity import MIN_SEEDS, SPREAD, aggregate

ALPHA = 0.05
"""A rank correlation counts at p below this."""
FIXED = ("iid", "last")
"""Schedules that train on a fixed fraction of the data (the ``data`` claim's runs)."""


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """(rho, p) of Spearman's rank correlation (:func:`~ssltheory.practice.studies.forecast.spearman`), None with
    fewer than :data:`~ssltheory.practice.studies.forecast.MIN_RUNS` points or no spread in x or y."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < MIN_RUNS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return spearman(x, y)


def data_trend(points: Sequence[dict]) -> dict[str, dict]:
    """Per model size: ``{n, rho, p, fractions, auc_by_fraction, verdict, reading}`` (``auc_by_fraction``: the mean
    AUC at each fraction, ascending; ``verdict`` for the sizes named ``small`` and ``large``, else None)."""
    out = {}
    for group in dict.fromkeys(p["group"] for p in points):
        mine = [p for p in points if p["group"] == group and p["schedule"] in FIXED and _finite(p["auc"])]
        fractions = sorted({p["fraction"] for p in mine})
        means = [float(np.mean([p["auc"] for p in mine if p["fraction"] == f])) for f in fractions]
        row = {"n": len(mine), "fractions": fractions, "auc_by_fraction": means}
        corr = _spearman([p["fraction"] for p in mine], [p["auc"] for p in mine])
        if corr is None:
            out[group] = {**row, "rho": None, "p": None, "verdict": "n/a" if group in ("small", "large") else None,
                          "reading": f"{group}: {len(mine)} fixed-fraction runs over {len(fractions)} fractions: "
                                     "no rank correlation (expected three runs or more over two fractions or more)"}
            continue
        rho, p = corr
        rises, falls = rho > 0 and p < ALPHA, rho < 0 and p < ALPHA
        word = {"small": "shows" if rises else "opposite" if falls else "absent",
                "large": "opposite" if rises else "shows"}.get(group)
        trend = "rises" if rises else "falls" if falls else "does not move significantly"
        out[group] = {**row, "rho": rho, "p": p, "verdict": word,
                      "reading": f"{group}: the AUC {trend} with the data ({means[0]:.3f} at {100 * fractions[0]:g} % "
                                 f"-> {means[-1]:.3f} at {100 * fractions[-1]:g} %; Spearman rho = {rho:+.2f}, "
                                 f"p = {p:.2g}, {len(mine)} runs)"}
    return out


def _compare(stream: list[float], iid: list[float], paper_sign: int) -> dict:
    """Δ = mean(stream) - mean(iid) with its spread and the verdict for an effect of sign ``paper_sign``."""
    a, b = aggregate([v for v in stream if _finite(v)]), aggregate([v for v in iid if _finite(v)])
    if a["mean"] is None or b["mean"] is None:
        return {"diff": None, "diff_std": None, "mean": a["mean"], "reference": b["mean"], "n": 0,
                "verdict": "n/a (no value)"}
    d, sd = a["mean"] - b["mean"], float(np.hypot(a["std"], b["std"]))
    if min(a["n"], b["n"]) < MIN_SEEDS:
        word = "n/a (1 seed)"
    elif abs(d) > SPREAD * sd:
        word = "shows" if d * paper_sign > 0 else "opposite"
    else:
        word = "absent"
    return {"diff": d, "diff_std": sd, "mean": a["mean"], "reference": b["mean"], "n": min(a["n"], b["n"]),
            "verdict": word}


def schedule_effects(points: Sequence[dict]) -> dict[str, dict]:
    """Per stream cell: ``{group, reference_cell, auc: {...}, probe: {...}, reading}`` (each of ``auc`` / ``probe``
    :func:`_compare`'s ``{diff, diff_std, mean, reference, n, verdict}``), against the same size's fixed-fraction
    cell on the most data; empty when the study has no stream runs."""
    out = {}
    for cell in dict.fromkeys(p["cell"] for p in points if p["schedule"] not in FIXED):
        mine = [p for p in points if p["cell"] == cell]
        group = mine[0]["group"]
        fixed = [p for p in points if p["group"] == group and p["schedule"] in FIXED]
        if not fixed:
            none = {"diff": None, "diff_std": None, "mean": None, "reference": None, "n": 0,
                    "verdict": "n/a (no fixed-fraction run of this size)"}
            out[cell] = {"group": group, "reference_cell": None, "auc": none, "probe": none,
                         "reading": f"{cell}: no fixed-fraction run of the {group} model to compare with"}
            continue
        most = max(p["fraction"] for p in fixed)
        ref = [p for p in fixed if p["fraction"] == most]
        auc = _compare([p["auc"] for p in mine], [p["auc"] for p in ref], -1)
        probe = _compare([p["probe_acc"] for p in mine], [p["probe_acc"] for p in ref], +1)
        out[cell] = {"group": group, "reference_cell": ref[0]["cell"], "auc": auc, "probe": probe,
                     "reading": f"{cell} against {ref[0]['cell']}: AUC {_delta(auc, 1, '.3f')}, probe "
                                f"{_delta(probe, 100, '.1f')} %"}
    return out


def _delta(c: dict, scale: float, fmt: str) -> str:
    """'a vs b (Δ d ± sd: verdict)' of a :func:`_compare` result, values times ``scale``."""
    if c["diff"] is None:
        return c["verdict"]
    return (f"{format(scale * c['mean'], fmt)} vs {format(scale * c['reference'], fmt)} (Δ "
            f"{format(scale * c['diff'], '+' + fmt)} ± {format(scale * c['diff_std'], fmt)}: {c['verdict']})")


def forecast_verdicts(by_group: dict[str, dict]) -> dict[str, str]:
    """Per model size, the forecast's verdict from its correlation (``forecast.correlate``'s dict, or its error)."""
    out = {}
    for group, c in by_group.items():
        if not _finite(c.get("spearman_rho")) or not _finite(c.get("spearman_p")):
            out[group] = "n/a"
        elif c["spearman_p"] < ALPHA:
            out[group] = "shows" if c["spearman_rho"] < 0 else "opposite"
        else:
            out[group] = "absent"
    return out


def collapse_claims(points: Sequence[dict], forecast_by_group: dict[str, dict] | None = None) -> dict:
    """``{"data", "schedules", "forecast"}``: :func:`data_trend`, :func:`schedule_effects` and, given the forecast's
    per-size correlations, :func:`forecast_verdicts`."""
    return {"data": data_trend(points), "schedules": schedule_effects(points),
            "forecast": forecast_verdicts(forecast_by_group or {})}
