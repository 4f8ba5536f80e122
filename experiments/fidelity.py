"""Seeds and verdicts: a cell's numbers over seeds, and whether a paper's effect shows in them.

A recipe with a ``reference`` cell reads each of its other cells against it: the paper's difference
d_paper = paper[cell] - paper[reference] (points of top-1 %) against the measured one, d = mean[cell] - mean[reference]
(kNN top-1 in %, the mean over seeds), with the spread of that difference sd = sqrt(std_cell^2 + std_ref^2) (the
sample standard deviations over seeds):

- the paper shows an effect (|d_paper| >= :data:`NO_EFFECT`): **shows** if d has its sign and |d| > 2 sd,
  **opposite** if d has the other sign and |d| > 2 sd, **absent** otherwise;
- the paper shows none (|d_paper| < :data:`NO_EFFECT`, e.g. bias on or off): **shows** if |d| <= 2 sd (no effect
  here either), **absent** otherwise (an effect the paper does not have).

A verdict needs at least :data:`MIN_SEEDS` seeds in both compared cells: with one seed sd = 0, so any difference,
0.0 included, would pass or fail "2 sd" by its sign alone; such a row's verdict is :data:`ONE_SEED` ("n/a (1 seed)"),
its difference still reported. A cell's collapse is read alongside:
feature std x sqrt(d), s_2 / s_1 of F̂ and kNN against random init (:func:`collapse_evidence`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

VERDICTS = ("shows", "absent", "opposite")
MIN_SEEDS = 2
"""Seeds each compared cell needs for a verdict (a spread over seeds needs two)."""
ONE_SEED = "n/a (1 seed)"
"""The verdict of a row compared on fewer than :data:`MIN_SEEDS` seeds: not read."""
NO_EFFECT = 1.0
"""A paper difference below this many points of top-1 is read as "no difference" (the papers report one run)."""
SPREAD = 2.0
"""A measured difference counts when it exceeds this many standard deviations of the difference."""
COLLAPSE_STD = 0.3
"""Feature std x sqrt(d) below this: the features are collapsed (1 for spread unit features, 0 for one point)."""
COLLAPSE_RATIO = 0.05
"""s_2 / s_1 of F̂ below this: the predictor's input is (nearly) rank one."""


def aggregate(values: Sequence[float | None]) -> dict:
    """``{"mean", "std", "n", "values"}`` of the finite values (std: sample std over seeds, 0 for one value; mean
    None when there is no value)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    mean = sum(vals) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "values": list(values)}


def verdict(paper_cell: float, paper_ref: float, cell: dict, ref: dict) -> dict:
    """The verdict on one row: the paper's numbers for the cell and the reference (top-1 %) and the measured
    aggregates of each (:func:`aggregate`, in %). Returns ``{"verdict", "paper_diff", "diff", "diff_std",
    "spread", "share"}``; ``share`` = diff / paper_diff, how much of the paper's effect is measured (1: all of it; a
    "shows" with a share of 0.05 is the paper's direction at a twentieth of its size), None where the paper has no
    effect. With fewer than :data:`MIN_SEEDS` values in either cell the verdict is :data:`ONE_SEED`."""
    d_paper = paper_cell - paper_ref
    if cell["mean"] is None or ref["mean"] is None:
        return {"verdict": "absent", "paper_diff": d_paper, "diff": None, "diff_std": None, "spread": "no value",
                "share": None}
    d = cell["mean"] - ref["mean"]
    sd = math.hypot(cell["std"], ref["std"])
    beyond = abs(d) > SPREAD * sd
    if min(cell["n"], ref["n"]) < MIN_SEEDS:
        word = ONE_SEED
    elif abs(d_paper) < NO_EFFECT:
        word = "absent" if beyond else "shows"
    elif beyond:
        word = "shows" if d * d_paper > 0 else "opposite"
    else:
        word = "absent"
    spread = "one seed" if min(cell["n"], ref["n"]) < 2 else f"{min(cell['n'], ref['n'])} seeds"
    share = d / d_paper if abs(d_paper) >= NO_EFFECT else None
    return {"verdict": word, "paper_diff": d_paper, "diff": d, "diff_std": sd, "spread": spread, "share": share}


def collapse_evidence(feature_std: float | None, s2_over_s1: float | None, knn: float | None,
                      knn_init: float | None) -> dict:
    """Whether a run's end state is collapsed, from its own numbers: ``collapsed`` (feature std x sqrt(d) below
    :data:`COLLAPSE_STD` or s_2 / s_1 below :data:`COLLAPSE_RATIO`), and ``knn_vs_init`` (kNN minus random init's)."""
    flags = [feature_std is not None and feature_std < COLLAPSE_STD,
             s2_over_s1 is not None and s2_over_s1 < COLLAPSE_RATIO]
    gain = None if knn is None or knn_init is None else knn - knn_init
    return {"collapsed": any(flags), "feature_std_low": flags[0], "rank_one": flags[1], "knn_vs_init": gain}
