"""``ssltheory experiment NAME``: run one paper result's recipe (parse, call, print)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from .output import console, hint, path_of, wrote


def experiment(
    name: str = typer.Argument(None, help="a recipe: the DirectPred paper's figN / tableN, UniGrad's unigrad-*, "
                                          "theory-unified, the collapse study's collapse-imagenet | collapse-places "
                                          "(--list: every name and what it reproduces)"),
    scale: str = typer.Option("smoke", help="smoke (digits or the theory, CPU, minutes) | cpu (digits, ~3,000 "
                                            "steps a run, long enough for the paper's effects where they show on a "
                                            "CPU) | fmnist (Fashion-MNIST's 60,000 images, a width-1/2 convnet, "
                                            "~1,000 steps a run, CPU) | fmnist-gpu (the same with ResNet-18 at 32 px "
                                            "and 10x the steps, GPU) | paper (the paper's settings, GPU)"),
    seeds: int = typer.Option(1, help="run every training cell with seeds 0..N-1 (folders CELL/seedK): mean ± std and "
                                      "a verdict per cell against the recipe's reference [1]"),
    out: str | None = typer.Option(None, help="results folder [default: runs/experiments/NAME-SCALE]", metavar="DIR",
                            show_default=False),
    max_steps: int = typer.Option(0, help="cap every training run at this many steps [0: the recipe's]"),
    jobs: int = typer.Option(1, help="train this many cells at once, each in its own process with cores / N threads "
                                     "(a small run is as fast on one core as on two) [1: one after another]"),
    list_recipes: bool = typer.Option(False, "--list", help="list the recipes and exit"),
    data_dir: str | None = typer.Option(None, help="where the scale's dataset lies, over every training cell's "
                                                   "[the scale's: data/ for paper, /usr/share/datasets/fashion-mnist "
                                                   "for fmnist]", metavar="DIR", show_default=False),
    force: bool = typer.Option(False, help="replace cells whose folders hold runs of other settings (a finished cell "
                                           "of the same settings is read, an unfinished one resumed, without it)"),
    launcher: str | None = typer.Option(
        None, help=hint("where the training runs run: local (here; --jobs) | slurm (one Slurm job per run, through "
                        "submitit) | submitit-local (the cluster path on this machine, for checking a setup) [local; "
                        "a later call on an --out that holds jobs.json reports its jobs] (docs/cluster.md)"),
        show_default=False, rich_help_panel="Cluster"),
    slurm_partition: str | None = typer.Option(None, help=hint("Slurm partition"), rich_help_panel="Cluster",
                                               show_default=False),
    slurm_time: str | None = typer.Option(None, help=hint("minutes per job; a job that reaches them is requeued and "
                                                          "resumes from its checkpoint [60]"), metavar="MINUTES",
                                          rich_help_panel="Cluster", show_default=False),
    slurm_gpus: str | None = typer.Option(None, help=hint("GPUs per run, one process each (DDP) [0]"), metavar="N",
                                          rich_help_panel="Cluster", show_default=False),
    slurm_cpus_per_task: str | None = typer.Option(None, help=hint("CPUs per process, also its torch threads [the "
                                                                   "cluster's default]"), metavar="N",
                                                   rich_help_panel="Cluster", show_default=False),
    slurm_account: str | None = typer.Option(None, help=hint("Slurm account to charge"), rich_help_panel="Cluster",
                                             show_default=False),
    slurm_logs: str | None = typer.Option(None, help=hint("folder of submitit's pickles and logs [OUT/submitit]"),
                                          metavar="DIR", rich_help_panel="Cluster", show_default=False),
    config: str | None = typer.Option(None, help=hint("cluster settings, JSON or YAML: partition, time, gpus, "
                                                      "cpus_per_task, account, logs, submitit (further submitit "
                                                      "parameters); the flags override it"), metavar="FILE",
                                      rich_help_panel="Cluster", show_default=False),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help=hint("wait for the jobs, then gather the results; or return once they are "
                                            "submitted (a later call on the same --out reads what has finished)"),
        rich_help_panel="Cluster"),
) -> None:
    """Reproduce one result of the three papers (DirectPred, UniGrad, the collapse study): theory figures, or a
    table's training runs side by side (and, for the collapse study, the AUC's forecast of probe accuracy)."""
    from ssltheory.experiments.launch import make_launcher, report
    from ssltheory.experiments.recipes import RECIPES, SCALES
    from ssltheory.experiments.run import get, run_recipe
    from ssltheory.theory.checks import ConfigError, check_choice, check_int
    from ssltheory.theory.io import check_out_dir

    from .output import progress
    from .practice_cmds import run

    if list_recipes or name is None:
        if name is None and not list_recipes:
            raise ConfigError("NAME is missing: expected one of " + ", ".join(RECIPES) + " (or --list)")
        table = Table("name", "result", "paper")
        for r in RECIPES.values():
            table.add_row(r.name, r.result, r.paper_numbers)
        console.print(table)
        return
    out_path = path_of("--out", out, "a results folder")  # read as text: Path("") would be the current folder
    check_int("--max-steps", max_steps, low=0)
    check_int("--seeds", seeds, low=1)
    check_int("--jobs", jobs, low=1)
    recipe = get(name)
    check_choice("--scale", scale, SCALES)
    folder = out_path or Path("runs") / "experiments" / f"{name}-{scale}"
    check_out_dir(folder)
    flags = {"partition": slurm_partition, "time": slurm_time, "gpus": slurm_gpus,
             "cpus_per_task": slurm_cpus_per_task, "account": slurm_account, "logs": slurm_logs}
    chosen = make_launcher(launcher, folder, flags, path_of("--config", config, "a JSON or YAML file of cluster "
                                                            "settings", "file"), wait, f"ssltheory-{name}")

    def trainer(cfg, run_dir: Path, resume: bool, force: bool) -> dict:
        return run(cfg, run_dir, resume=resume, force=force)

    results = run_recipe(recipe, scale, folder, max_steps=max_steps, seeds=seeds, trainer=trainer, progress=progress,
                         force=force, jobs=jobs, settings={"data_dir": data_dir} if data_dir else None,
                         announce=lambda line: console.print(f"[bold]{escape(line)}[/bold]"), launcher=chosen)
    if not chosen.gathers and "jobs" in results:  # submitted, not waited for
        console.print(f"{len(results['jobs'])} runs, jobs in {folder / 'jobs.json'}; the same command without "
                      "--launcher (and its cluster flags) reads what has finished and reports the rest")
        for line in report({j["run"]: _state(j) for j in results["jobs"]}):
            console.print(escape(line))
        return
    if not recipe.training:
        wrote([Path(f) for row in results["cells"] for f in row["figures"]] + [folder / "results.json"])
        return

    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else "-"

    if recipe.forecast:  # no paper number per cell: the study's own columns
        table = Table("cell", "kNN final", "± std", "std·√d", "offline AUC", "k_eq", "probe acc",
                      title=f"{name} ({scale}, {seeds} seed{'s' if seeds > 1 else ''})")
        for row in results["cells"]:
            table.add_row(row["cell"], fmt(row.get("knn_acc_final")),
                          fmt(row.get("stats", {}).get("knn_acc_final", {}).get("std")),
                          fmt(row.get("feature_std_x_sqrt_d")), fmt(row.get("offline_auc")),
                          f"{row['k_eq']:.1f}" if isinstance(row.get("k_eq"), float) else "-",
                          fmt(row.get("probe_acc")))
    else:
        table = Table("cell", "paper", "kNN init", "kNN final", "± std", "std·√d", "s2/s1", "verdict",
                      title=f"{name} ({scale}, {seeds} seed{'s' if seeds > 1 else ''}); paper: {recipe.paper_numbers}")
        for row in results["cells"]:
            v = row.get("verdict")
            table.add_row(row["cell"], fmt(row.get("paper")), fmt(row.get("knn_acc_init")),
                          fmt(row.get("knn_acc_final")), fmt(row.get("stats", {}).get("knn_acc_final", {}).get("std")),
                          fmt(row.get("feature_std_x_sqrt_d")), fmt(row.get("s2_over_s1")),
                          row.get("state") or ("reference" if row["cell"] == recipe.reference else
                                               v["verdict"] if v else "-"))
    console.print(table)
    for line in report({j["run"]: _state(j) for j in results.get("jobs", [])}):
        console.print(escape(line))
    if "baselines" in results:
        b = results["baselines"]
        console.print(f"baselines on {b['dataset']}: random init kNN {fmt(b.get('random_init_knn'))}, raw pixels kNN "
                      f"{fmt(b.get('raw_pixels_knn'))}" + (f", raw pixels probe {fmt(b['raw_pixels_probe'])}"
                                                           if "raw_pixels_probe" in b else ""))
    if "forecast" in results:
        console.print(f"forecast, all runs: {results['forecast']['reading']}")
        for g, c in results["forecast"]["by_group"].items():
            verdict = results.get("claims", {}).get("forecast", {}).get(g)
            console.print(escape(f"forecast, {g}: {c['reading']}" + (f": {verdict}" if verdict else "")))
    claims = results.get("claims", {})
    for row in claims.get("data", {}).values():
        console.print(escape(f"data, {row['reading']}" + (f": {row['verdict']}" if row["verdict"] else "")))
    for row in claims.get("schedules", {}).values():
        console.print(escape(f"schedule, {row['reading']}"))
    wrote(sorted([*folder.glob("results.*"), *folder.glob("forecast.*"), *folder.glob("study.png")]))


def _state(row: dict):
    """A job's row of results.json as a :class:`~ssltheory.experiments.launch.JobState`."""
    from ssltheory.experiments.launch import JobState

    return JobState(**row)
