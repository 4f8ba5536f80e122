"""A finished recipe's ``results.json`` as the Markdown table rows of ``experiments/README.md``.

``python -m ssltheory.experiments.markdown RESULTS.json [...]`` prints, per training cell: the paper's number and its
difference from the reference, the measured kNN (mean ± std over seeds, in %), the difference from the reference
± its spread with the share of the paper's difference, feature std × √d, s_2 / s_1 of F̂, and the verdict with the
collapse flag (:mod:`.fidelity`); then the table's baselines (random init, raw pixels), and for the collapse study its
claims (:mod:`.collapse_claims`: the data trend per size, each schedule against the most data, the forecast per size).
Nothing is computed that results.json does not hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = ("| table | cell | paper (Δ vs ref) | kNN % mean ± std (seeds) | Δ ± sd (share of paper's Δ) | std·√d | "
          "s_2/s_1 | verdict |\n|---|---|---|---|---|---|---|---|")


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def rows(results: dict) -> list[str]:
    """One Markdown row per training cell of ``results`` (a recipe's results.json)."""
    name, ref = results["experiment"], results.get("reference")
    paper_ref = next((c.get("paper") for c in results["cells"] if c["cell"] == ref), None)
    out = []
    for c in results["cells"]:
        if "stats" not in c:
            continue
        knn = c["stats"]["knn_acc_final"]
        paper = c.get("paper")
        paper_txt = "-" if paper is None else (f"{paper:.2f}" if c["cell"] == ref or paper_ref is None
                                               else f"{paper:.2f} ({paper - paper_ref:+.1f})")
        mean = "-" if knn["mean"] is None else f"{100 * knn['mean']:.1f} ± {100 * knn['std']:.1f} ({knn['n']})"
        v = c.get("verdict")
        if c["cell"] == ref:
            diff, word = "reference", "reference"
        elif v and v.get("diff") is not None:
            share = "" if v.get("share") is None else f" ({v['share']:.2f})"
            diff, word = f"{v['diff']:+.1f} ± {v['diff_std']:.1f}{share}", v["verdict"]
        else:
            diff, word = "-", "-"
        if c.get("collapse", {}).get("collapsed"):
            word += ", collapsed"
        std = c["stats"].get("feature_std_x_sqrt_d", {})
        std_txt = "-" if std.get("mean") is None else f"{std['mean']:.2f} ± {std['std']:.2f}"
        out.append(f"| {name} | {c['cell']} | {paper_txt} | {mean} | {diff} | {std_txt} | "
                   f"{_num(c.get('s2_over_s1'), '.3f')} | {word} |")
    return out


def baselines_line(results: dict) -> str:
    """The table's baselines as one sentence ('' without them)."""
    b = results.get("baselines")
    if not b:
        return ""
    parts = [f"random init kNN {_num(b.get('random_init_knn') and 100 * b['random_init_knn'], '.1f')}",
             f"raw pixels kNN {_num(b.get('raw_pixels_knn') and 100 * b['raw_pixels_knn'], '.1f')}"]
    if b.get("raw_pixels_probe") is not None:
        parts.append(f"raw pixels linear probe {100 * b['raw_pixels_probe']:.1f}")
    return f"{results['experiment']} baselines ({b.get('dataset')}): " + ", ".join(parts)


def claims_rows(results: dict) -> list[str]:
    """The collapse study's claims as Markdown rows ``| claim | evidence | verdict |`` (none without claims)."""
    claims = results.get("claims")
    if not claims:
        return []
    out = ["| claim | evidence | verdict |", "|---|---|---|"]
    out += [f"| data, {g} | {row['reading'].split(': ', 1)[-1]} | {row['verdict'] or '-'} |"
            for g, row in claims["data"].items()]
    for cell, row in claims["schedules"].items():
        a, p = row["auc"], row["probe"]
        out.append(f"| {cell} vs {row['reference_cell']} | AUC {a['mean']:.3f} vs {a['reference']:.3f} "
                   f"(Δ {a['diff']:+.3f} ± {a['diff_std']:.3f}); probe {100 * p['mean']:.1f} vs "
                   f"{100 * p['reference']:.1f} % (Δ {100 * p['diff']:+.1f} ± {100 * p['diff_std']:.1f}) | "
                   f"collapse {a['verdict']}, accuracy {p['verdict']} |")
    by_group = results.get("forecast", {}).get("by_group", {})
    out += [f"| forecast, {g} | {by_group.get(g, {}).get('reading', '-')} | {word} |"
            for g, word in claims["forecast"].items()]
    return out


def main(paths: list[str]) -> None:
    print(HEADER)
    docs = [json.loads(Path(p).read_text()) for p in paths]
    for doc in docs:
        print("\n".join(rows(doc)))
    for doc in docs:
        line = baselines_line(doc)
        if line:
            print("\n" + line)
        claims = claims_rows(doc)
        if claims:
            print("\n" + "\n".join(claims))


if __name__ == "__main__":
    main(sys.argv[1:])
