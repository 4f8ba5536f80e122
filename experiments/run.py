"""Run a recipe's cells and gather their numbers into ``results.json``, ``results.csv`` and ``results.png``.

Training cells go through :func:`ssltheory.practice.engine.train.train` with their config, theory cells through
:mod:`ssltheory.theory.outputs`; nothing re-enters the command line. A cell whose run folder already holds the
same settings is not run again: a finished one is read, an interrupted one resumed from its checkpoint.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.distributed import from_env
from ssltheory.practice.engine.rundir import RunDir
from ssltheory.practice.measure.quantities import upgrade
from ssltheory.theory.checks import ConfigError, check_choice
from ssltheory.theory.io import save_figure, save_json, write_atomic

from .cells import Trainer, default_trainer, run_cell
from .fidelity import aggregate, collapse_evidence, verdict
from .launch import CLUSTER, JobState, Launcher, dispatch, run_key
from .parallel import check_jobs, train_first
from .recipes import RECIPES, SCALES, Recipe

SUMMARY_KEYS = ("knn_acc_init", "knn_acc_final", "feature_std_x_sqrt_d", "probe_auc", "mean_alignment_top_modes",
                "asymmetry_top", "positive_cosine", "negative_cosine", "decorrelation", "balance_ratio",
                "adaptive_balance", "grad_cosine", "steps", "s2_over_s1")
STAT_KEYS = ("knn_acc_final", "knn_acc_init", "feature_std_x_sqrt_d", "s2_over_s1")
"""The numbers aggregated over seeds (mean, std) for verdicts and collapse evidence."""
def get(name: str) -> Recipe:
    """The recipe called ``name``; a one-line error naming the known ones otherwise."""
    check_choice("NAME", name, tuple(RECIPES))
    return RECIPES[name]


def _s2_over_s1(run_dir: Path) -> float | None:
    """s_2 / s_1 of F̂ at the run's last measurement (None without one)."""
    folder = RunDir(run_dir)
    if not folder.file("metrics.jsonl").exists():
        return None
    last = next((r for r in reversed(folder.records()) if len(r.get("s", ())) > 1), None)
    return None if last is None or last["s"][0] <= 0 else float(last["s"][1] / last["s"][0])


def run_recipe(recipe: Recipe, scale: str, out: Path, *, max_steps: int = 0, seeds: int = 1,
               trainer: Trainer = default_trainer, progress=None, announce: Callable[[str], None] | None = None,
               force: bool = False, jobs: int = 1, settings: dict | None = None,
               launcher: Launcher | None = None) -> dict:
    """Run every cell of ``recipe`` at ``scale`` into ``out/CELL`` (with ``seeds`` > 1: ``out/CELL/seedK``, seeds
    0..seeds-1); returns the results (also written as results.json, and for training recipes results.csv and
    results.png). A training cell's row holds the mean over seeds of each summary number, ``stats`` (mean, std, n
    and the values of :data:`STAT_KEYS`), its collapse evidence, and, for a recipe with a reference cell and the
    paper's numbers, its ``verdict`` (:mod:`.fidelity`). ``announce`` is told each cell's command line before it
    runs; ``progress`` is the theory runs' progress bar (see :func:`ssltheory.theory.outputs.simulate`); ``force``
    replaces cells that hold runs of other settings (see :func:`run_cell`); ``jobs`` > 1 trains the cells in that
    many processes first (:mod:`.parallel`, one bar over the runs), then reads them. ``settings`` go over every
    training cell's (``{"data_dir": ...}``: where the scale's dataset lies here). Under torchrun, rank 0 writes.
    ``launcher`` (:mod:`.launch`; None: local) may instead submit the training runs as cluster jobs: then the
    finished runs are read, the others reported in their rows (``state``, ``jobs``) and in ``results["jobs"]``,
    nothing is trained here; after a submission without waiting the call returns the jobs alone and writes nothing.
    """
    check_choice("--scale", scale, SCALES)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds {seeds} is out of range: expected an integer >= 1")
    # every seed's configs are validated before any cell runs
    configs = ([recipe.configs(scale, max_steps, seed=None if seeds == 1 else k, settings=settings)
                for k in range(seeds)]
               if recipe.training else [])
    out.mkdir(parents=True, exist_ok=True)
    check_jobs(jobs)
    _check_launcher(recipe, launcher, jobs)
    runs = [(cfgs[cell], _seed_dir(out / cell, k, seeds)) for k, cfgs in enumerate(configs) for cell in cfgs]
    states = dispatch(launcher, out, runs, force, announce, lambda job: command_line(*job)) \
        if launcher is not None and configs else None
    if states is not None and not launcher.gathers:  # submitted, not waited for: the jobs are the answer
        return {"experiment": recipe.name, "scale": scale, "seeds": seeds, "cells": [],
                "jobs": [s.row() for s in states.values()]}
    if jobs > 1 and configs and states is None:
        train_first(runs, jobs, force, progress, recipe.name, announce, lambda job: command_line(*job))
    # with --jobs the processes (or the cluster's jobs) replaced what --force names; now they are read
    train_force = force and jobs == 1 and states is None
    rows = []
    points: list[dict] = []
    for cell, spec in recipe.cells.items():
        if cell in recipe.skip.get(scale, ()):
            continue
        cell_out = out / cell
        if configs and cell in configs[0]:
            dirs = [_seed_dir(cell_out, k, seeds) for k in range(seeds)]
            row = {"cell": cell, "paper": recipe.paper.get(cell), "command": command_line(configs[0][cell], dirs[0]),
                   "seeds": seeds}
            waiting = [states[run_key(out, d)] for d in dirs] if states is not None else []
            if any(s.state != "finished" for s in waiting):  # a job not finished: reported, not trained here
                rows.append({**row, **_unfinished(waiting)})
                continue
            summaries = []
            for cfgs, run_dir in zip(configs, dirs, strict=True):
                if announce and jobs == 1 and states is None:
                    announce(command_line(cfgs[cell], run_dir))
                summary = upgrade(dict(run_cell(cfgs[cell], run_dir, trainer, train_force)))  # (older: "auc")
                summary["s2_over_s1"] = _s2_over_s1(run_dir)
                summaries.append(summary)
            row["stats"] = {k: aggregate([sm.get(k) for sm in summaries]) for k in STAT_KEYS}
            row.update({k: _mean([sm.get(k) for sm in summaries]) for k in SUMMARY_KEYS})
            row["collapse"] = collapse_evidence(row["feature_std_x_sqrt_d"], row["s2_over_s1"], row["knn_acc_final"],
                                                row["knn_acc_init"])
            if recipe.forecast and from_env().main:
                cell_points = [{**_forecast_point(d, cell), **_design(cfgs[cell])}
                               for cfgs, d in zip(configs, dirs, strict=True)]
                points += cell_points
                row.update({k: _mean([p[k] for p in cell_points]) for k in FORECAST_KEYS})
            if seeds > 1:
                row["figures"] = sorted(str(p) for d in dirs for p in d.glob("*.png"))
        else:
            row = {"cell": cell, "command": f"{spec.command_line()} --out {cell_out}"}
            if announce:
                announce(row["command"])
            spec.run(cell_out, progress, **({"trainer": trainer, "force": force, "max_steps": max_steps, "jobs": jobs}
                                            if getattr(spec, "trains", False) else {}))
        row.setdefault("figures", sorted(str(p) for p in cell_out.glob("*.png")))
        rows.append(row)
    _verdicts(recipe, rows)
    results = {"experiment": recipe.name, "result": recipe.result, "scale": scale, "seeds": seeds,
               "paper_numbers": recipe.paper_numbers, "reference": recipe.reference, "cells": rows}
    if not from_env().main:
        return results
    if states is not None:
        results["jobs"] = [s.row() for s in states.values()]
    if configs and any("state" not in r for r in rows):  # (none while every cell's jobs are still out)
        results["baselines"] = baselines(next(iter(configs[0].values())), rows, recipe.forecast, out)
    save_json(out / "results.json", results)
    if recipe.training:
        _write_csv(out / "results.csv", rows, recipe.forecast)
        measured = [r for r in rows if "state" not in r]
        if measured:
            _bar_figure(out / "results.png", recipe, scale, measured, results.get("baselines"))
    if points:
        from ssltheory.practice.studies import forecast

        from .collapse_claims import collapse_claims

        try:
            doc = forecast.forecast(points, {"experiment": recipe.name, "scale": scale, "seeds": seeds})
            forecast.write_results(out, doc)
            results["forecast"] = {**doc["correlation"], "by_group": doc["by_group"]}
        except ConfigError as e:  # every AUC or accuracy equal: the runs stand, the correlation is undefined
            results["forecast"] = {"reading": f"no forecast: {e}", "by_group": {}}
        results["claims"] = collapse_claims(points, results["forecast"]["by_group"])
        save_json(out / "results.json", results)
        study_figure(out / "study.png", recipe.name, scale, rows, configs[0])
    return results


def _check_launcher(recipe: Recipe, launcher: Launcher | None, jobs: int) -> None:
    """A one-line error for a cluster launcher with ``--jobs`` > 1, or with a recipe whose cells train through
    another path (a phase grid's runs train through --jobs)."""
    if launcher is None or launcher.kind not in CLUSTER:
        return
    flag = f"--launcher {launcher.kind}"
    if jobs > 1:
        raise ConfigError(f"--jobs {jobs} with {flag} is not accepted: expected --jobs 1 (every run is its own job)")
    grid = next((cell for cell, spec in recipe.cells.items() if getattr(spec, "trains", False)), None)
    if grid is not None:
        raise ConfigError(f"{recipe.name}'s cell {grid} trains a grid of runs locally, which {flag} does not submit: "
                          "expected --launcher local (with --jobs N)")


def _unfinished(states: list[JobState]) -> dict:
    """A row's part for a cell whose runs are not all finished: the state that matters most (failed, running,
    pending, unknown, not submitted) and each run's job."""
    order = ("failed", "running", "pending", "unknown", "not submitted")
    seen = {s.state for s in states}
    return {"state": next((s for s in order if s in seen), "unknown"), "jobs": [s.row() for s in states]}


def baselines(cfg: TrainConfig, rows: list[dict], probe: bool = False, out: Path | None = None) -> dict:
    """What a table's kNN numbers are read against: the random-init network's kNN (mean over the cells' runs, which
    measure it before their first step) and the raw pixels' (and, with ``probe``, their linear probe), on ``cfg``'s
    dataset (:func:`ssltheory.practice.measure.evaluate.pixel_baselines`). The pixels' numbers are kept in
    ``out/baselines.json`` and read back while the dataset and the kNN settings are the same."""
    from ssltheory.practice.measure.evaluate import pixel_baselines
    from ssltheory.practice.studies.forecast import read_point

    key = {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "image_size": cfg.image_size, "knn_k": cfg.knn_k,
           "knn_t": cfg.knn_t, "probe": probe}
    kept = read_point(out / "baselines.json") if out is not None else None
    if kept is None or kept.get("key") != key:
        kept = {"key": key, **pixel_baselines(cfg, probe=probe)}
        if out is not None:
            save_json(out / "baselines.json", kept)
    return {"random_init_knn": _mean([r.get("knn_acc_init") for r in rows]),
            **{k: v for k, v in kept.items() if k != "key"}, "dataset": cfg.dataset}


def _seed_dir(cell_out: Path, seed: int, seeds: int) -> Path:
    """A cell's run folder for ``seed``: the cell's own with one seed, ``CELL/seedK`` with several."""
    return cell_out if seeds == 1 else cell_out / f"seed{seed}"


FORECAST_KEYS = ("offline_auc", "k_eq", "d", "probe_acc")
"""A forecast recipe's numbers per cell (mean over seeds): the paper's offline AUC, k_eq and d, the linear probe."""


def _forecast_point(run_dir: Path, cell: str) -> dict:
    """The run's offline AUC and probe accuracy (:func:`ssltheory.practice.studies.forecast.run_point`), grouped by the
    cell's first word (its model size: small-f10 -> small)."""
    from ssltheory.practice.engine.step import resolve_device
    from ssltheory.practice.studies import forecast

    p = forecast.run_point(run_dir, resolve_device("auto"), group=cell.split("-")[0])
    return {**p, "cell": cell, "offline_auc": p["auc"]}


def _design(cfg: TrainConfig) -> dict:
    """What a collapse-study run varies (:mod:`.collapse_claims`): its seed, train fraction and schedule (``iid`` /
    ``last``, a continual stream's ``current`` / ``accumulate``, or ``hybrid``: a stream that turns IID)."""
    from ssltheory.practice.data.schedule import last_fraction

    schedule = "hybrid" if cfg.hybrid_epoch else cfg.resolved_data_schedule
    fraction = float(last_fraction(cfg)) if schedule == "last" else cfg.data_fraction
    return {"seed": cfg.seed, "fraction": fraction, "schedule": schedule}


def study_figure(path: Path, name: str, scale: str, rows: list[dict], configs: dict[str, TrainConfig]) -> None:
    """The collapse study at a glance: offline AUC (left) and probe accuracy (right) against the train fraction
    (log x), one line per model size, the continual and hybrid runs as dashed and dotted levels."""
    import matplotlib
    from matplotlib.figure import Figure

    from ssltheory.practice.data.schedule import STREAMS

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    colours = matplotlib.colormaps["tab10"]
    groups = list(dict.fromkeys(r["cell"].split("-")[0] for r in rows if "probe_acc" in r))
    for g, group in enumerate(groups):
        mine = [r for r in rows if r["cell"].split("-")[0] == group and "probe_acc" in r]
        iid = sorted((configs[r["cell"]].data_fraction, r) for r in mine
                     if configs[r["cell"]].resolved_data_schedule in ("iid", "last"))
        for ax, key, scaleby in ((axes[0], "offline_auc", 1), (axes[1], "probe_acc", 100)):
            ax.plot([100 * f for f, _ in iid], [scaleby * r[key] for _, r in iid], marker="o", color=colours(g),
                    label=f"{group}: last P % (IID)")
            for r in mine:
                cfg = configs[r["cell"]]
                if cfg.resolved_data_schedule in STREAMS and cfg.resolved_data_schedule != "last":
                    style = ":" if cfg.hybrid_epoch else "--"
                    what = f"hybrid (stream until epoch {cfg.hybrid_epoch})" if cfg.hybrid_epoch else \
                        f"continual ({cfg.data_schedule})"
                    ax.axhline(scaleby * r[key], ls=style, color=colours(g), lw=1.2, label=f"{group}: {what}")
    for ax, ylabel in zip(axes, ("offline collapse AUC (higher = more collapsed)", "linear-probe accuracy (%)"),
                          strict=True):
        ax.set(xscale="log", xlabel="train fraction P (%)", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{name} ({scale} scale): collapse against data and model size, and the schedules", fontsize=10)
    save_figure(fig, path)


def _mean(values: list) -> float | int | None:
    """The mean of the numbers among ``values`` (the value itself for one seed, None if there is none)."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) == 1:
        return nums[0]
    return sum(nums) / len(nums) if nums else None


def _verdicts(recipe: Recipe, rows: list[dict]) -> None:
    """Each training row's verdict against the recipe's reference cell (kNN top-1 in %, :func:`.fidelity.verdict`)."""
    ref = next((r for r in rows if r["cell"] == recipe.reference and "stats" in r), None)
    if ref is None or ref["cell"] not in recipe.paper:
        return

    def pct(stats: dict) -> dict:
        return {**stats, "mean": None if stats["mean"] is None else 100 * stats["mean"],
                "std": 100 * stats["std"]}

    for r in rows:
        if "stats" in r and r["cell"] != ref["cell"] and r["cell"] in recipe.paper:
            r["verdict"] = verdict(recipe.paper[r["cell"]], recipe.paper[ref["cell"]],
                                   pct(r["stats"]["knn_acc_final"]), pct(ref["stats"]["knn_acc_final"]))


def refresh_verdicts(out: Path) -> dict:
    """Recompute the verdicts of a recipe's finished ``out/results.json`` from its stored per-seed numbers (the
    rule of :mod:`.fidelity` as it is now; nothing is trained or read from the run folders, which need not exist)
    and rewrite results.json, results.csv and results.png; returns the results. A one-line error when ``out`` holds
    no results.json of a known recipe."""
    path = Path(out) / "results.json"
    try:
        results = json.loads(path.read_text())
        recipe = get(results["experiment"])
        rows = results["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} cannot be read ({type(e).__name__}): expected the results.json that ssltheory "
                          "experiment writes") from None
    for r in rows:
        r.pop("verdict", None)
    _verdicts(recipe, rows)
    save_json(path, results)
    if recipe.training:
        named = [{**r, "probe_auc": r.get("probe_auc", r.get("auc"))} for r in rows]  # (older results: "auc")
        _write_csv(path.parent / "results.csv", named, recipe.forecast)
        _bar_figure(path.parent / "results.png", recipe, results.get("scale", "?"), rows, results.get("baselines"))
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


def _write_csv(path: Path, rows: list[dict], forecast: bool = False) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["cell", "paper", "verdict", "diff", "diff_std", "paper_diff", "share",
                                        "knn_std", "collapsed", *SUMMARY_KEYS,
                                        *(FORECAST_KEYS if forecast else ())], extrasaction="ignore")
    w.writeheader()
    w.writerows({**r, **{k: r.get("verdict", {}).get(k) for k in ("diff", "diff_std", "paper_diff", "share")},
                 "verdict": r.get("verdict", {}).get("verdict"),
                 "knn_std": r.get("stats", {}).get("knn_acc_final", {}).get("std"),
                 "collapsed": r.get("collapse", {}).get("collapsed")} for r in rows)
    write_atomic(path, buf.getvalue().encode())


def _bar_figure(path: Path, recipe: Recipe, scale: str, rows: list[dict], base: dict | None = None) -> None:
    from ssltheory.theory.io import use_file_backend

    use_file_backend()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(5 + 1.1 * len(rows), 4.2))
    names = [r["cell"] for r in rows]
    knn = [100 * (r.get("knn_acc_final") or 0) for r in rows]
    err = [100 * r.get("stats", {}).get("knn_acc_final", {}).get("std", 0.0) for r in rows]
    ax[0].bar(names, knn, yerr=err if any(err) else None, color="tab:green", capsize=3)
    for x, r in enumerate(rows):
        if "verdict" in r:
            ax[0].text(x, knn[x] + 0.5, r["verdict"]["verdict"], ha="center", va="bottom", fontsize=7, rotation=90)
    init = next((r["knn_acc_init"] for r in rows if r.get("knn_acc_init") is not None), None)
    pixels = (base or {}).get("raw_pixels_knn")
    if init is not None:
        ax[0].axhline(100 * init, color="k", ls="--", lw=1, label="random init")
    if pixels is not None:
        ax[0].axhline(100 * pixels, color="tab:red", ls=":", lw=1.2, label="raw pixels")
    if init is not None or pixels is not None:
        ax[0].legend(fontsize=8)
    ax[0].set_ylim(min(knn + [100 * (init or 1), 100 * (pixels or 1)]) - 5, 100)
    ax[0].set_ylabel("kNN top-1 (%)")
    ax[1].bar(names, [r.get("feature_std_x_sqrt_d") or 0 for r in rows], color="tab:purple")
    ax[1].set_ylabel(r"feature std $\times \sqrt{d}$ (0 = collapsed, 1 = spread)")
    for a in ax:
        a.tick_params(axis="x", rotation=30, labelsize=8)
    fig.suptitle(f"{recipe.name} ({scale}): {recipe.result}\npaper: {recipe.paper_numbers}", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
