"""Training commands: ``train`` (new or ``--resume``) and ``probe``. They parse, call and print."""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ssltheory.theory.checks import ConfigError
from ssltheory.theory.io import check_out_dir

from .output import console, err_console, hint, path_of, paths_of, save_figure, save_json, wrote

RUN_DIR_EXPECTED = "the folder of a run of ssltheory train"


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or through the environment), not its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _train(ctx: typer.Context, dataset: str | None, config_text: str | None, resume_text: str | None, force: bool,
           out_text: str | None, **flags) -> None:
    """Train with the theory's knobs, measuring F̂, W_p, alignment and collapse as it goes."""
    from ssltheory.practice.config import TrainConfig, field_names, flag_of, load_settings
    from ssltheory.practice.engine.rundir import RunDir

    # read as text: Path("") would be the current folder (a run started, or a settings file read, from there)
    config = path_of("--config", config_text, "a JSON or YAML file of settings", "file")
    resume = path_of("--resume", resume_text, RUN_DIR_EXPECTED)
    out = path_of("--out", out_text, "the path of a folder for the run")
    given = {name: v for name, v in flags.items() if _given(ctx, name)}
    if dataset is not None:
        given["dataset"] = dataset
    if resume is not None:
        extra = sorted(flag_of(n) for n in given) + [f for f, v in (("--config", config), ("--out", out),
                                                             ("--force", force)) if v]
        if extra:
            raise ConfigError(f"--resume {resume} continues the run with the settings in its config.json: "
                              f"{', '.join(extra)} cannot change on resume (expected --resume alone, or a new run "
                              "with --config " + str(resume / "config.json") + " and the changed flags)")
        run(RunDir(resume).config("--resume"), resume, resume=True)
        return
    from_file = field_names(load_settings(config) if config is not None else {})
    settings = {**from_file, **given}
    if "dataset" not in settings:
        from ssltheory.practice.data.registry import DATASETS

        raise ConfigError(f"DATASET is missing: expected one of {', '.join(DATASETS)} (or --config FILE, or --resume "
                          "RUN_DIR)")
    try:
        cfg = TrainConfig.from_settings(settings)
    except ConfigError as e:  # a bad value the file gave (not a flag): say where it came from
        if any(str(e).startswith(flag_of(k) + " ") for k in from_file if k not in given):
            raise ConfigError(f"{e} (in --config {config})") from None
        raise
    from ssltheory.practice.methods.registry import METHODS

    variant = cfg.predictor if METHODS[cfg.method].predictor(cfg) else cfg.resolved_form
    run_dir = out or Path("runs") / f"{cfg.dataset}-{cfg.method}-{variant}-{time.strftime('%Y%m%d-%H%M%S')}"
    run(cfg, run_dir, force=force)


def _train_signature() -> inspect.Signature:
    """The ``train`` command's parameters: DATASET, one option per config field (name, help text with the paper's
    default, section), and the run's own options (--config, --resume, --force, --out)."""
    from ssltheory.practice.config import TrainConfig

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for s in TrainConfig.settings():
        text = s.help + (f" [paper: {s.paper}]" if s.paper else "")
        if callable(s.choices):  # a registry: its names as they are now, added methods and datasets included
            text = f"{' | '.join(s.accepted())}: {text}"
        if s.name == "dataset":
            default = typer.Argument(None, help=hint(text), show_default=False, metavar="DATASET")
            params.append(inspect.Parameter("dataset", kw, default=default, annotation=str | None))
            continue
        spelling = [s.spelling, *s.aliases] if s.flag or s.aliases else []
        default = typer.Option(s.default, *spelling, help=hint(text), rich_help_panel=s.help_panel)
        params.append(inspect.Parameter(s.name, kw, default=default, annotation=s.type))
    for name, kind, metavar, help_text in (  # paths as text: path_of refuses "" (Path("") is the current folder)
            ("config", str | None, "FILE", "settings file: a run's config.json, or JSON / YAML of {setting: value}; "
                                           "flags given here override it"),
            ("resume", str | None, "RUN_DIR", "continue the run in this folder from its last checkpoint, with its "
                                              "settings"),
            ("force", bool, None, "replace the run in --out if the folder holds one (its files are removed first)"),
            ("out", str | None, "DIR", "run folder [default: runs/<dataset>-<method>-<predictor>-<time>]")):
        params.append(inspect.Parameter(name, kw, default=typer.Option(False if kind is bool else None,
                                                                        help=hint(help_text), rich_help_panel="Run",
                                                                        metavar=metavar, show_default=False),
                                        annotation=kind))
    return inspect.Signature(params)


def _make_train():
    def train(ctx: typer.Context, **kwargs) -> None:
        """Train a Siamese method (BYOL, SimSiam, MoCo, SimCLR, Barlow Twins, VICReg, UniGrad; loss or gradient form)
        with the theory's knobs, measuring F̂, W_p, alignment, the method's F and balance, and collapse as it goes.
        Every setting is a flag; --config FILE reads them from a file and flags override it."""
        _train(ctx, kwargs.pop("dataset"), kwargs.pop("config"), kwargs.pop("resume"), kwargs.pop("force"),
               kwargs.pop("out"), **kwargs)

    refresh(train)
    return train


def refresh(command) -> None:
    """Give the ``train`` command the flags of every setting declared now (a method or dataset registered after
    import included): called when the command line is built (``cli/main.py``)."""
    sig = _train_signature()
    command.__signature__ = sig
    command.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()} | {"return": None}


train = _make_train()


def run(cfg, run_dir: Path, resume: bool = False, force: bool = False) -> dict:
    """Train with a rich progress bar, then print the run's summary and its files."""
    from ssltheory.practice.engine.distributed import from_env
    from ssltheory.practice.engine.rundir import CHECKPOINT, CONFIG, FIGURE, METRICS, SUMMARY
    from ssltheory.practice.engine.train import train as train_loop

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} img/s"),
                   TextColumn("kNN {task.fields[knn]}"), TextColumn("probe AUC {task.fields[auc]}"),
                   TimeElapsedColumn(), TimeRemainingColumn(),
                   console=err_console)
    from ssltheory.practice.methods.registry import METHODS

    variant = cfg.predictor if METHODS[cfg.method].predictor(cfg) else cfg.resolved_form
    task = bar.add_task(f"{cfg.dataset} {cfg.method} {variant}", total=None, loss="-", rate="-", knn="-", auc="-")

    def update(p) -> None:
        if not bar.live.is_started:  # started on the first report, so set-up errors stay one line
            bar.start()
        knn = f"{100 * p.knn:.1f}%" if p.knn is not None else "-"
        bar.update(task, total=p.total, completed=p.step, loss=f"{p.loss:.4f}", rate=f"{p.images_per_s:.0f}",
                   knn=knn, auc="-" if p.probe_auc is None else f"{p.probe_auc:.3f}")
        if p.warning:
            bar.console.print(f"[yellow]warning:[/yellow] {p.warning}")

    try:
        summary = train_loop(cfg, run_dir, resume=resume, force=force, on_progress=update)
    finally:
        if bar.live.is_started:  # (rich prints a blank line when a bar that never started is stopped)
            bar.stop()
    if not from_env().main:  # torchrun: rank 0 prints
        return summary
    table = Table("measure", "value", title=f"run {run_dir}")
    for k, v in summary.items():
        shown = "not measured" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
        table.add_row(k, shown)
    console.print(table)
    wrote([run_dir / name for name in (FIGURE, METRICS, SUMMARY, CONFIG, CHECKPOINT)])
    return summary


def probe(
    run_dir: str = typer.Argument(..., help="folder of a training run", metavar="RUN_DIR", show_default=False),
    epochs: int = typer.Option(50, help="probe epochs [paper: 50]"),
    lr: float = typer.Option(3e-4, help="Adam learning rate [paper: 3e-4]"),
    weight_decay: float = typer.Option(1e-3, help="Adam weight decay [paper: 1e-3]"),
    batch_size: int = typer.Option(128, help="global batch size, split over torchrun ranks [paper: 128]"),
    device: str = typer.Option("auto", help="cpu | cuda [auto]"),
    data_dir: str = typer.Option(None, help="where the dataset's files are, for a run moved to another machine "
                                            "[default: the run's own --data-dir]", show_default=False),
    out: str | None = typer.Option(None, help="where probe.json goes [default: RUN_DIR]", metavar="DIR",
                            show_default=False),
) -> None:
    """Linear probe on frozen, standardised backbone features; reports the LAST epoch's test accuracy."""
    from ssltheory.practice.engine.step import check_device, resolve_device
    from ssltheory.practice.measure.evaluate import probe_run
    from ssltheory.theory.checks import check_int, check_number

    run_dir, out = path_of("RUN_DIR", run_dir, RUN_DIR_EXPECTED), path_of("--out", out, "a folder for probe.json")
    check_int("--epochs", epochs, low=1)
    check_number("--lr", lr, low=0.0, low_open=True, high=100.0)
    check_number("--weight-decay", weight_decay, low=0.0, high=1.0)
    check_int("--batch-size", batch_size, low=1)
    check_device(device)
    check_out_dir(out or run_dir)
    res = probe_run(run_dir, resolve_device(device), epochs=epochs, lr=lr, weight_decay=weight_decay,
                    batch_size=batch_size, data_dir=data_dir)
    path = save_json((out or run_dir) / "probe.json", res)
    console.print(f"linear probe, step {res['step']}: test accuracy {100 * res['test_acc']:.2f}% "
                  f"(last of {epochs} epochs; best over epochs would be {100 * res['best_test_acc_optimistic']:.2f}%)")
    wrote([path])


def compare(
    run_dirs: list[str] = typer.Argument(..., help="one or more folders of training runs", metavar="RUN_DIR...",
                                         show_default=False),
    modes: int = typer.Option(8, help="leading modes of F to compare"),
    sigma2: float = typer.Option(None, help="augmentation variance σ² assumed for image runs [synthetic: the run's; "
                                            "images: 0.5]"),
    out: str = typer.Option("runs/compare", help="where compare.png and compare.json go", metavar="DIR"),
) -> None:
    """The theory's prediction beside what a run measured: modes p_j, s_j, phase portrait, alignment."""
    from ssltheory.practice.report.plots import compare_figure
    from ssltheory.practice.studies.compare import compare_run, to_json
    from ssltheory.theory.checks import check_int, check_number

    run_dirs = paths_of("RUN_DIR", run_dirs, RUN_DIR_EXPECTED)
    out = path_of("--out", out, "a folder for compare.png and compare.json")
    check_int("--modes", modes, low=1)
    if sigma2 is not None:
        check_number("--sigma2", sigma2, low=0.0)
    check_out_dir(out)
    comparisons = [compare_run(d, modes, sigma2) for d in run_dirs]
    out.mkdir(parents=True, exist_ok=True)
    paths = [save_figure(compare_figure(comparisons), out / "compare.png"),
             save_json(out / "compare.json", {"runs": [to_json(c) for c in comparisons]})]
    table = Table("run", "final (p; s unified)", "p path", "s path", "in claim", "assumed",
                  title="theory vs run: relative error of the worst mode; assumptions met")
    for c in comparisons:
        a = c.agreement
        met = sum(x["holds"] for x in c.assumptions)
        lead = a.get("p", a["s"])  # unified forms have no predictor: their claim is on s_j
        table.add_row(Path(c.run).name, f"{lead['max_final_rel_err']:.1%}",
                      f"{a['p']['max_trajectory_rel_err']:.1%}" if "p" in a else "-",
                      f"{a['s']['max_trajectory_rel_err']:.1%}", "yes" if a["within_claim"] else "no",
                      f"{met}/{len(c.assumptions)}")
    console.print(table)
    wrote(paths)


def report(
    run_dir: str = typer.Argument(..., help="folder of a training run", metavar="RUN_DIR", show_default=False),
    modes: int = typer.Option(8, help="leading modes of F in the compare section"),
    out: str | None = typer.Option(None, help="HTML file to write [default: RUN_DIR/report.html]", metavar="FILE",
                            show_default=False),
) -> None:
    """One self-contained HTML page for a run: settings, its figures, the theory beside it, final numbers."""
    from ssltheory.practice.report.html import build_report
    from ssltheory.theory.checks import check_int
    from ssltheory.theory.io import write_atomic

    run_dir = path_of("RUN_DIR", run_dir, RUN_DIR_EXPECTED)
    out = path_of("--out", out, "the path of the HTML file to write", "file")
    check_int("--modes", modes, low=1)
    path = out or run_dir / "report.html"
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder: expected the path of the HTML file to write")
    check_out_dir(path.parent, "--out")
    text = build_report(run_dir, modes)
    write_atomic(path, text.encode())
    wrote([path])
