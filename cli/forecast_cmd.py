"""``ssltheory forecast``: the collapse AUC against linear-probe accuracy across runs (collapse.md B2). It parses,
calls and prints; the work is in :mod:`ssltheory.practice.studies.forecast`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ssltheory.theory.checks import ConfigError

from .output import console, hint, out_dir, path_of, paths_of, wrote


def forecast(
    run_dirs: list[str] = typer.Argument(..., help="folders of training runs on a labelled dataset (3 or more)",
                                          show_default=False, metavar="RUN_DIR..."),
    groups: str = typer.Option(None, help=hint("comma-separated group of each RUN_DIR, for the figure's colours "
                                               "(e.g. small,small,large) [default: one group]"), show_default=False),
    probe_epochs: int = typer.Option(50, help="linear-probe epochs [paper: 50]"),
    device: str = typer.Option("auto", help="cpu | cuda [auto]"),
    data_dir: str = typer.Option(None, help=hint("where the dataset's files are, for runs moved to another machine "
                                                 "[default: each run's own --data-dir]"), show_default=False),
    out: str = typer.Option("runs/forecast", help="where forecast.png, forecast.json and forecast.csv go",
                            metavar="DIR"),
) -> None:
    """Label-free forecasting: each run's offline collapse AUC (paper protocol) against its linear-probe accuracy,
    with Spearman's rank correlation across runs, as a scatter PNG and JSON/CSV."""
    from ssltheory.practice.engine.rundir import check_run_dir
    from ssltheory.practice.engine.step import check_device, resolve_device
    from ssltheory.practice.studies import forecast as Fc
    from ssltheory.theory.checks import check_int

    run_dirs = paths_of("RUN_DIR", run_dirs, "the folder of a run of ssltheory train")  # Path("") would be "."
    out = path_of("--out", out, "a folder for the results")
    check_int("--probe-epochs", probe_epochs, low=1, high=10**5)
    check_device(device)
    names = [""] * len(run_dirs) if groups is None else [g.strip() for g in groups.split(",")]
    if len(names) != len(run_dirs):
        raise ConfigError(f"--groups {groups} has {len(names)} values for {len(run_dirs)} runs: expected one group "
                          "per RUN_DIR")
    if len(run_dirs) < Fc.MIN_RUNS:
        raise ConfigError(f"{len(run_dirs)} RUN_DIRs cannot be correlated: expected at least {Fc.MIN_RUNS}")
    for r in run_dirs:
        check_run_dir(r)
    out_dir(out)
    dev = resolve_device(device)
    points = []
    with console.status("measuring runs") as status:
        for r, g in zip(run_dirs, names, strict=True):
            points.append(Fc.run_point(r, dev, group=g, probe={"epochs": probe_epochs}, on_progress=status.update,
                                       data_dir=data_dir))
    doc = Fc.forecast(points, {"command": "forecast", "probe_epochs": probe_epochs,
                               "run_dirs": [str(r) for r in run_dirs], "groups": names})
    paths = Fc.write_results(out, doc)
    table = Table("run", "group", "AUC", "k_eq", "probe acc", "kNN acc")
    for p in doc["runs"]:
        table.add_row(Path(p["run"]).name, p["group"], f"{p['auc']:.3f}", f"{p['k_eq']:.1f}",
                      f"{100 * p['probe_acc']:.1f}%", "" if p["knn_acc"] is None else f"{100 * p['knn_acc']:.1f}%")
    console.print(table)
    if len(doc["by_group"]) > 1:  # the forecast is read within a model size; the pooled rho mixes sizes
        for g, c in doc["by_group"].items():
            console.print(f"{g}: {c['reading']}")
        console.print(f"all runs pooled (mixes groups, not a forecast): {doc['correlation']['reading']}")
    else:
        console.print(f"all runs: {doc['correlation']['reading']}")
    wrote(paths)
