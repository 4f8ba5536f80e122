"""``ssltheory collapse``: Li, Efros & Pathak's collapse metric offline (collapse.md B1). It parses, calls and prints;
the work is in :mod:`ssltheory.practice.studies.collapse`."""

from __future__ import annotations

import typer
from rich.table import Table

from ssltheory.theory.checks import ConfigError

from .output import console, hint, out_dir, path_of, paths_of, progress, wrote


def collapse(
    run_dirs: list[str] = typer.Argument(None, help="folders of training runs (config.json + checkpoint.pt)",
                                          show_default=False, metavar="RUN_DIR..."),
    spectra: list[str] = typer.Option(None, "--spectra", metavar="FILE", help=hint(
        "file of singular values instead of a model (repeatable): JSON {spectra: {NAME: {sigma: [...]}}} as "
        "tests/fixtures/collapse_resnet18_spectra.json or a collapse.json, the official {stds: S} .pt, or a .npy / "
        ".txt of one spectrum"), show_default=False),
    state_dict: list[str] = typer.Option(None, "--state-dict", metavar="FILE", help=hint(
        "torchvision ResNet state dict (repeatable; the official SimSiam checkpoints' module.encoder. prefix and fc "
        "head are handled); needs --arch and --dataset"), show_default=False),
    arch: str = typer.Option(None, help="resnet18 | resnet34 | resnet50: what --state-dict holds",
                             show_default=False),
    dataset: str = typer.Option(None, help="digits | stl10 | cifar10 | imagenet | folder: what --state-dict is read "
                                           "on (its whole train split, eval transform)", show_default=False),
    data_dir: str = typer.Option(None, help=hint("where the dataset's files are [default: a run's own --data-dir; "
                                                 "data for --state-dict]"), show_default=False),
    image_size: int = typer.Option(0, help=hint("input size for --state-dict [0: the dataset's, 224 for imagenet]")),
    l2_normalise: bool = typer.Option(False, "--l2-normalise", help=hint(
        "l2-normalise each sample's features before centring [paper: off]")),
    labels: str = typer.Option(None, help=hint(
        "comma-separated x values of the AUC sweep plot, one per input in the order RUN_DIRs, --spectra entries, "
        "--state-dict files [default: the spectra "
        "file's labels, a number leading every name (1percent), else the order]"), show_default=False),
    x_label: str = typer.Option(None, help="x-axis title of the AUC sweep plot", show_default=False),
    device: str = typer.Option("auto", help="cpu | cuda [auto]"),
    batch_size: int = typer.Option(256, help="images per forward pass while extracting features"),
    workers: int = typer.Option(0, help="DataLoader workers while extracting features"),
    out: str = typer.Option("runs/collapse", help="where the PNGs, collapse.json, collapse.csv and config.json go",
                            metavar="DIR"),
) -> None:
    """Collapse AUC of pooled backbone features over a whole train split (Li, Efros & Pathak; centred, σ not σ²):
    singular values, σ/σ₁, the cumulative curve and AUC across inputs as PNGs, the numbers as JSON and CSV."""
    from ssltheory.practice.engine.rundir import check_run_dir
    from ssltheory.practice.engine.step import check_device, resolve_device
    from ssltheory.practice.studies import collapse as C
    from ssltheory.theory.checks import check_int

    # paths are read as text: Path("") would be the current folder
    run_dirs = paths_of("RUN_DIR", run_dirs, "the folder of a run of ssltheory train")
    spectra = paths_of("--spectra", spectra, "a file of singular values", "file")
    state_dict = paths_of("--state-dict", state_dict, "a file holding a torchvision ResNet state dict", "file")
    out = path_of("--out", out, "a folder for the results")
    check_int("--batch-size", batch_size, low=1)
    check_int("--workers", workers, low=0)
    check_int("--image-size", image_size, low=0)
    check_device(device)
    out_dir(out)
    if not (run_dirs or spectra or state_dict):
        raise ConfigError("nothing to measure: expected RUN_DIR..., --spectra FILE or --state-dict FILE (with --arch "
                          "and --dataset)")
    if state_dict:
        C.check_state_dict_args(arch, dataset)
        for f in state_dict:  # every file read (and dropped) before the first features are extracted
            C.load_resnet(f, arch)
    else:
        for flag, value in (("--arch", arch), ("--dataset", dataset)):
            if value is not None:
                raise ConfigError(f"{flag} {value} is read with --state-dict only: expected --state-dict FILE beside "
                                  "it (a run folder brings its own model and dataset)")
    for d in run_dirs:  # every cheap check before the first model is loaded
        check_run_dir(d, "a file of singular values goes to --spectra, a state dict to --state-dict")
    read = [s for f in spectra for s in C.read_spectra(f)]
    label_list = [v.strip() for v in labels.split(",")] if labels is not None else None
    C.check_labels(label_list, len(run_dirs) + len(read) + len(state_dict))
    dev = resolve_device(device) if (run_dirs or state_dict) else None
    common = {"l2_normalise": l2_normalise, "batch_size": batch_size, "workers": workers}
    measured = []
    for d in run_dirs:
        with progress(f"features of {d}") as update:
            measured.append(C.run_spectrum(d, dev, data_dir=data_dir, on_progress=update, **common))
    for f in state_dict:
        with progress(f"features of {f}") as update:
            measured.append(C.state_dict_spectrum(f, arch, dataset, dev, data_dir=data_dir or "data",
                                                  image_size=image_size, on_progress=update, **common))
    inputs = C.unique_names(measured[:len(run_dirs)] + read + measured[len(run_dirs):])
    settings = {"run_dirs": [str(d) for d in run_dirs], "spectra": [str(f) for f in spectra],
                "state_dict": [str(f) for f in state_dict], "arch": arch, "dataset": dataset, "data_dir": data_dir,
                "image_size": image_size, "labels": label_list, "device": str(dev) if dev else None, **common}
    doc = C.summarise(inputs, label_list, x_label, settings)
    paths = C.write_results(out, doc)
    table = Table("input", "AUC", "k_eq", "d", "N", title="collapse AUC (higher = more collapsed; range "
                                                          "[(d+1)/2d, 1])")
    for name, e in doc["spectra"].items():
        table.add_row(name, f"{e['auc']:.4f}", f"{e['k_eq']:.1f}", str(e["d"]), "-" if e["n"] is None else
                      str(e["n"]))
    console.print(table)
    wrote(paths)
