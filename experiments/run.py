"""Run a recipe's cells and gather their numbers into ``results.json``, ``results.csv`` and ``results.png``."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from ssltheory.theory.io import save_json, write_atomic
from ssltheory.theory.params import check_choice

from .recipes import RECIPES, SCALES, Recipe

SUMMARY_KEYS = ("knn_acc_init", "knn_acc_final", "feature_std_x_sqrt_d", "auc", "mean_alignment_top_modes",
                "asymmetry_top", "steps")


def get(name: str) -> Recipe:
    """The recipe called ``name``; a one-line error naming the known ones otherwise."""
    check_choice("NAME", name, tuple(RECIPES))
    return RECIPES[name]


def run_recipe(recipe: Recipe, scale: str, out: Path, invoke: Callable[[list[str]], None],
               max_steps: int = 0) -> dict:
    """Run every cell of ``recipe`` at ``scale`` with ``invoke(argv)`` into ``out/CELL``; returns the results."""
    check_choice("--scale", scale, SCALES)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for cell, argv in recipe.commands(scale).items():
        cell_out = out / cell
        extra = ["--max-steps", str(max_steps)] if max_steps and recipe.training else []
        invoke([*argv, *extra, "--out", str(cell_out)])
        row = {"cell": cell, "command": "ssltheory " + " ".join([*argv, *extra, "--out", str(cell_out)])}
        summary = cell_out / "summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            row.update({k: s.get(k) for k in SUMMARY_KEYS})
        row["figures"] = sorted(str(p) for p in cell_out.glob("*.png"))
        rows.append(row)
    results = {"experiment": recipe.name, "result": recipe.result, "scale": scale,
               "paper_numbers": recipe.paper_numbers, "cells": rows}
    save_json(out / "results.json", results)
    if recipe.training:
        _write_csv(out / "results.csv", rows)
        _bar_figure(out / "results.png", recipe, scale, rows)
    return results


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["cell", *SUMMARY_KEYS], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def _bar_figure(path: Path, recipe: Recipe, scale: str, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssltheory.cli.output import save_figure

    fig, ax = plt.subplots(1, 2, figsize=(5 + 1.1 * len(rows), 4.2))
    names = [r["cell"] for r in rows]
    knn = [100 * (r.get("knn_acc_final") or 0) for r in rows]
    ax[0].bar(names, knn, color="tab:green")
    init = next((r["knn_acc_init"] for r in rows if r.get("knn_acc_init") is not None), None)
    if init is not None:
        ax[0].axhline(100 * init, color="k", ls="--", lw=1, label="random init")
        ax[0].legend(fontsize=8)
    ax[0].set_ylim(min(knn + [100 * (init or 1)]) - 5, 100)
    ax[0].set_ylabel("kNN top-1 (%)")
    ax[1].bar(names, [r.get("feature_std_x_sqrt_d") or 0 for r in rows], color="tab:purple")
    ax[1].set_ylabel(r"feature std $\times \sqrt{d}$ (0 = collapsed, 1 = spread)")
    for a in ax:
        a.tick_params(axis="x", rotation=30, labelsize=8)
    fig.suptitle(f"{recipe.name} ({scale}): {recipe.result}\npaper: {recipe.paper_numbers}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
