"""Run a recipe's cells and gather their numbers into ``results.json``, ``results.csv`` and ``results.png``.

Training cells go through :func:`ssltheory.practice.train.train` with their config, theory cells through
:mod:`ssltheory.theory.outputs`; nothing re-enters the command line. A cell whose run folder already holds the
same settings is not run again: a finished one is read, an interrupted one resumed from its checkpoint.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.rundir import CONFIG, SUMMARY, RunDir
from ssltheory.theory.io import save_figure, save_json, write_atomic
from ssltheory.theory.params import ConfigError, check_choice

from .recipes import RECIPES, SCALES, Recipe

SUMMARY_KEYS = ("knn_acc_init", "knn_acc_final", "feature_std_x_sqrt_d", "auc", "mean_alignment_top_modes",
                "asymmetry_top", "positive_cosine", "negative_cosine", "decorrelation", "balance_ratio",
                "adaptive_balance", "grad_cosine", "steps")
Trainer = Callable[[TrainConfig, Path, bool, bool], dict]
"""(config, run folder, resume, force) -> summary: how a training cell is run (the library's train, or the CLI's
with a progress bar)."""


def get(name: str) -> Recipe:
    """The recipe called ``name``; a one-line error naming the known ones otherwise."""
    check_choice("NAME", name, tuple(RECIPES))
    return RECIPES[name]


def default_trainer(cfg: TrainConfig, run_dir: Path, resume: bool, force: bool) -> dict:
    from ssltheory.practice.train import train

    return train(cfg, run_dir, resume=resume, force=force)


def run_cell(cfg: TrainConfig, run_dir: Path, trainer: Trainer = default_trainer, force: bool = False) -> dict:
    """Train ``cfg`` into ``run_dir`` unless the folder holds it already: the summary of a finished run with the
    same settings is read, an unfinished one resumed from its checkpoint; a folder that holds a run with other
    settings is replaced only with ``force`` (a one-line error otherwise)."""
    folder = RunDir(run_dir)
    held = folder.holds_run()
    same = folder.file(CONFIG).exists() and folder.config() == cfg
    if same and folder.file(SUMMARY).exists() and not force:
        return json.loads(folder.file(SUMMARY).read_text())
    if held and not same and not force:
        raise ConfigError(f"cell {run_dir} holds a run with other settings: expected another --out, or --force to "
                          "replace it")
    resume = same and not force and folder.load_checkpoint() is not None
    return trainer(cfg, run_dir, resume, force or (held and not resume))


def run_recipe(recipe: Recipe, scale: str, out: Path, *, max_steps: int = 0, trainer: Trainer = default_trainer,
               progress=None, announce: Callable[[str], None] | None = None, force: bool = False) -> dict:
    """Run every cell of ``recipe`` at ``scale`` into ``out/CELL``; returns the results (also written as
    results.json, and for training recipes results.csv and results.png). ``announce`` is told each cell's command
    line before it runs; ``progress`` is the theory runs' progress bar (see :func:`ssltheory.theory.outputs.simulate`);
    ``force`` replaces cells that hold runs of other settings (see :func:`run_cell`). Under torchrun, rank 0 writes.
    """
    check_choice("--scale", scale, SCALES)
    configs = recipe.configs(scale, max_steps) if recipe.training else {}  # validates every cell before any runs
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for cell, spec in recipe.cells.items():
        cell_out = out / cell
        if cell in configs:
            row = {"cell": cell, "paper": recipe.paper.get(cell), "command": command_line(configs[cell], cell_out)}
            if announce:
                announce(row["command"])
            summary = run_cell(configs[cell], cell_out, trainer, force)
            row.update({k: summary.get(k) for k in SUMMARY_KEYS})
        else:
            row = {"cell": cell, "command": f"{spec.command_line()} --out {cell_out}"}
            if announce:
                announce(row["command"])
            spec.run(cell_out, progress)
        row["figures"] = sorted(str(p) for p in cell_out.glob("*.png"))
        rows.append(row)
    results = {"experiment": recipe.name, "result": recipe.result, "scale": scale,
               "paper_numbers": recipe.paper_numbers, "cells": rows}
    from ssltheory.practice.distributed import from_env

    if not from_env().main:
        return results
    save_json(out / "results.json", results)
    if recipe.training:
        _write_csv(out / "results.csv", rows)
        _bar_figure(out / "results.png", recipe, scale, rows)
    return results


def command_line(cfg: TrainConfig, out: Path) -> str:
    """The ``ssltheory train`` command line of ``cfg`` (its settings that differ from the defaults)."""
    from ssltheory.practice.config import flag_of

    words = ["ssltheory", "train", cfg.dataset]
    for name, value in cfg.changes().items():
        if name == "dataset":
            continue
        if isinstance(value, bool):
            words.append(flag_of(name) if value else "--no-" + flag_of(name)[2:])
        else:
            words += [flag_of(name), f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join([*words, "--out", str(out)])


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["cell", "paper", *SUMMARY_KEYS], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue().encode())


def _bar_figure(path: Path, recipe: Recipe, scale: str, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
