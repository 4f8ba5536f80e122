"""Training commands: ``train`` (new or ``--resume``) and ``probe``. They parse, call and print."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ssltheory.theory.params import ConfigError

from .output import console, err_console, save_figure, save_json, wrote


def train(
    dataset: str = typer.Argument(None, help="digits | stl10 | cifar10 | imagenet | folder | synthetic (the "
                                              "theory's Gaussian data, for --model linear)"),
    resume: Path = typer.Option(None, help="continue the run in this folder from its last checkpoint"),
    method: str = typer.Option("byol", help="byol (EMA target) | simsiam (target = online net)"),
    predictor: str = typer.Option("linear", help="linear | mlp | symmetric | directpred | optimal (least squares "
                                                 "plugged in every --freq steps, Table 1) | none"),
    predictor_bias: bool = typer.Option(False, help="bias in the linear predictor [paper: no bias]"),
    rho: float = typer.Option(0.3, help="DirectPred: moving-average rate ρ of F̂ [paper: 0.3]"),
    eps: float = typer.Option(0.1, help="DirectPred: ε in p_j = sqrt(s_j / max s) + ε [paper's best: 0.1]; "
                                        "optimal: ridge λ = ε·max s_j"),
    eps_inside: bool = typer.Option(False, help="DirectPred: p_j = sqrt(max(s_j / max s + ε, 1e-4)) instead; ε may "
                                                "be negative (Table 7: ε = -c_j)"),
    freq: int = typer.Option(1, help="DirectPred / optimal: set W_p every N steps, SGD in between [paper: 1]"),
    directpred_solver: str = typer.Option("auto", help="DirectPred: eigh (eigendecomposition of F̂) | newton-schulz "
                                          "(the same W_p to ~1e-8 from matrix products, nothing waits for the GPU; "
                                          "needs ε >= 1e-4) [auto: newton-schulz on CUDA, eigh otherwise]"),
    backbone: str = typer.Option("auto", "--backbone", "--model",
                                 help="resnet18 | resnet34 | resnet50 | convnet | linear [auto: convnet for digits, "
                                      "linear for synthetic, resnet18 otherwise]"),
    epochs: int = typer.Option(100, help="epochs [paper: 100]"),
    batch_size: int = typer.Option(128, help="global batch size, split over torchrun ranks [paper: 128]"),
    lr: float = typer.Option(0.03, help="learning rate α of the online net [paper: 0.03]"),
    momentum: float = typer.Option(None, help="SGD momentum [paper: 0.9; 0 for synthetic]"),
    weight_decay: float = typer.Option(4e-4, help="weight decay of the trunk (torch SGD's; η = this in the ODE's "
                                                  "time t = step × lr) [paper: 4e-4]"),
    predictor_weight_decay: float = typer.Option(None, help="weight decay of the predictor [default: as trunk]"),
    alpha_p: float = typer.Option(1.0, help="predictor learning-rate ratio α_p (lr of W_p = α_p × lr) [paper: 1]"),
    ema: float = typer.Option(0.996, help="EMA rate γ_a of the target (BYOL) [paper: 0.996]"),
    ema_schedule: str = typer.Option("constant", help="constant [paper] | cosine (γ_a → 1, BYOL)"),
    stop_grad: bool = typer.Option(True, "--stop-grad/--no-stop-grad", help="stop-gradient on the target branch "
                                                                           "(--no-stop-grad needs simsiam)"),
    schedule: str = typer.Option("constant", help="lr schedule: constant [paper] | cosine (with warm-up)"),
    warmup_epochs: int = typer.Option(0, help="linear warm-up epochs of the cosine schedule"),
    optimizer: str = typer.Option("sgd", help="sgd [paper] | lars"),
    proj_hidden: int = typer.Option(512, help="projector hidden width [paper: 512]"),
    proj_dim: int = typer.Option(128, help="projector output width d of F̂ and W_p [paper: 128]"),
    pred_hidden: int = typer.Option(512, help="hidden width of the mlp predictor [paper: 512]"),
    image_size: int = typer.Option(0, help="input size in px [0: 8 digits, 96 stl10, 32 cifar10, 224 otherwise]"),
    data_dir: str = typer.Option("data", help="where the dataset's files are"),
    download: bool = typer.Option(False, help="download STL-10 / CIFAR-10 into --data-dir if missing"),
    device: str = typer.Option("auto", help="cpu | cuda | cuda:N [auto: cuda when available]"),
    workers: int = typer.Option(0, help="DataLoader worker processes (--data-path loader)"),
    data_path: str = typer.Option("auto", help="loader (DataLoader, per-image torchvision) | device (dataset held on "
                                               "the device, batched augmentation; digits, cifar10, stl10) "
                                               "[auto: device on CUDA]"),
    precision: str = typer.Option("auto", help="fp32 | bf16 (autocast; F̂, eigendecompositions and metrics stay "
                                               "fp32) [auto: bf16 on CUDA]"),
    cuda_graph: str = typer.Option("auto", help="auto | on | off: replay forward + backward from one CUDA graph "
                                   "(auto: on CUDA with one process and no --compile)"),
    compile: str = typer.Option("none", help="torch.compile the step and the target's forward: none | default | "
                                "reduce-overhead (CUDA graphs) | max-autotune"),
    lr_scale: str = typer.Option("none", help="none [paper] | linear (lr × batch/256) | sqrt; the batch is the "
                                              "global batch over all torchrun ranks"),
    measure_every: int = typer.Option(50, help="steps between measurements of F̂, W_p and the collapse metric"),
    probe_size: int = typer.Option(512, help="images of the fixed probe set of the collapse metric"),
    knn_k: int = typer.Option(200, help="kNN neighbours [200]"),
    knn_t: float = typer.Option(0.1, help="kNN temperature [0.1]"),
    knn_every: int = typer.Option(1, help="epochs between kNN evaluations [1; 0: only at start and end]"),
    checkpoint_every: int = typer.Option(0, help="steps between checkpoints [0: every epoch]"),
    max_steps: int = typer.Option(0, help="stop after this many steps [0: all epochs]"),
    loss: str = typer.Option("auto", help="cosine [paper's nets] | l2 (Eq. 1) [auto: l2 for --model linear]"),
    predictor_init: str = typer.Option("auto", help="random | identity (W_p = scale × I) [auto: identity for "
                                                    "--model linear]"),
    predictor_init_scale: float = typer.Option(0.5, help="p_j(0) of the identity predictor init"),
    sigma2: float = typer.Option(0.5, help="synthetic: augmentation variance σ² of x = x0 + σ·noise [0.5]"),
    input_dim: int = typer.Option(0, help="synthetic: input width n1 [0: --proj-dim]"),
    synthetic_size: int = typer.Option(8192, help="synthetic: samples per epoch, each drawn fresh"),
    seed: int = typer.Option(0, help="random seed"),
    out: Path = typer.Option(None, help="run folder [default: runs/<dataset>-<predictor>-<time>]"),
) -> None:
    """Train BYOL or SimSiam with the theory's knobs, measuring F̂, W_p, alignment and collapse as it goes."""
    from ssltheory.practice.config import TrainConfig

    if resume is not None:
        if not (resume / "config.json").exists():
            raise ConfigError(f"--resume {resume} has no config.json: expected the folder of a run started by "
                              "ssltheory train")
        cfg, run_dir = TrainConfig.load(resume / "config.json"), resume
    else:
        if dataset is None:
            raise ConfigError("DATASET is missing: expected one of digits, stl10, cifar10, imagenet, folder, "
                              "synthetic "
                              "(or --resume RUN_DIR)")
        cfg = TrainConfig(dataset=dataset, data_dir=data_dir, download=download, image_size=image_size,
                          method=method, predictor=predictor, predictor_bias=predictor_bias, rho=rho, eps=eps,
                          eps_inside=eps_inside, directpred_solver=directpred_solver,
                          freq=freq, backbone=backbone, proj_hidden=proj_hidden, proj_dim=proj_dim,
                          pred_hidden=pred_hidden, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                          weight_decay=weight_decay, predictor_weight_decay=predictor_weight_decay, alpha_p=alpha_p,
                          ema=ema, ema_schedule=ema_schedule, stop_grad=stop_grad, schedule=schedule,
                          warmup_epochs=warmup_epochs, optimizer=optimizer, device=device, seed=seed,
                          workers=workers, measure_every=measure_every, probe_size=probe_size, knn_k=knn_k,
                          knn_t=knn_t, knn_every=knn_every, checkpoint_every=checkpoint_every, max_steps=max_steps,
                          loss=loss, predictor_init=predictor_init, predictor_init_scale=predictor_init_scale,
                          sigma2=sigma2, input_dim=input_dim, synthetic_size=synthetic_size, data_path=data_path,
                          precision=precision, compile=compile, cuda_graph=cuda_graph,
                          lr_scale=lr_scale)
        run_dir = out or Path("runs") / f"{dataset}-{predictor}-{time.strftime('%Y%m%d-%H%M%S')}"
    run(cfg, run_dir, resume=resume is not None)


def run(cfg, run_dir: Path, resume: bool = False) -> dict:
    """Train with a rich progress bar, then draw the run's figure and print its summary."""
    from ssltheory.practice import plots
    from ssltheory.practice.distributed import from_env
    from ssltheory.practice.train import read_metrics
    from ssltheory.practice.train import train as train_loop

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} img/s"),
                   TextColumn("kNN {task.fields[knn]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=err_console)
    task = bar.add_task(f"{cfg.dataset} {cfg.method} {cfg.predictor}", total=None, loss="-", rate="-", knn="-")

    def update(p) -> None:
        if not bar.live.is_started:  # started on the first report, so set-up errors stay one line
            bar.start()
        knn = f"{100 * p.knn:.1f}%" if p.knn is not None else "-"
        bar.update(task, total=p.total, completed=p.step, loss=f"{p.loss:.4f}", rate=f"{p.images_per_s:.0f}",
                   knn=knn)
        if p.warning:
            bar.console.print(f"[yellow]warning:[/yellow] {p.warning}")

    try:
        summary = train_loop(cfg, run_dir, resume=resume, on_progress=update)
    finally:
        bar.stop()
    if not from_env().main:  # torchrun: rank 0 draws and prints
        return summary
    records = read_metrics(run_dir / "metrics.jsonl")
    fig = plots.run_figure(records, f"{cfg.dataset}, {cfg.method}, predictor={cfg.predictor}, lr={cfg.lr:g}, "
                                    f"wd={cfg.weight_decay:g}, α_p={cfg.alpha_p:g}, γ_a={cfg.ema:g}")
    paths = [save_figure(fig, run_dir / "dynamics.png"), run_dir / "metrics.jsonl", run_dir / "summary.json",
             run_dir / "config.json", run_dir / "checkpoint.pt"]
    table = Table("measure", "value", title=f"run {run_dir}")
    for k, v in summary.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)
    wrote(paths)
    return summary


def probe(
    run_dir: Path = typer.Argument(..., help="folder of a training run"),
    epochs: int = typer.Option(50, help="probe epochs [paper: 50]"),
    lr: float = typer.Option(3e-4, help="Adam learning rate [paper: 3e-4]"),
    weight_decay: float = typer.Option(1e-3, help="Adam weight decay [paper: 1e-3]"),
    batch_size: int = typer.Option(128, help="global batch size, split over torchrun ranks [paper: 128]"),
    device: str = typer.Option("auto", help="cpu | cuda [auto]"),
    out: Path = typer.Option(None, help="where probe.json goes [default: RUN_DIR]"),
) -> None:
    """Linear probe on frozen, standardised backbone features; reports the LAST epoch's test accuracy."""
    from ssltheory.practice import checkpoint
    from ssltheory.practice.config import TrainConfig
    from ssltheory.practice.data import build_data
    from ssltheory.practice.evaluate import extract, linear_probe
    from ssltheory.practice.train import build_model, resolve_device

    if not (run_dir / "config.json").exists():
        raise ConfigError(f"RUN_DIR {run_dir} has no config.json: expected the folder of a run of ssltheory train")
    state = checkpoint.load(run_dir)
    if state is None:
        raise ConfigError(f"RUN_DIR {run_dir} has no checkpoint.pt: expected a run that finished at least one epoch")
    cfg = TrainConfig.load(run_dir / "config.json")
    dev = resolve_device(device)
    data = build_data(cfg)
    if data.num_classes < 2:
        raise ConfigError(f"RUN_DIR {run_dir} was trained on {cfg.dataset}, which has no labels: expected a run on "
                          "digits, stl10, cifar10, imagenet or folder")
    model = build_model(cfg, data.in_channels, dev)
    model.online.load_state_dict(state["modules"]["online"])
    train_x, train_y = extract(model.online.backbone, data.train_eval, dev)
    test_x, test_y = extract(model.online.backbone, data.test_eval, dev)
    res = linear_probe(train_x, train_y, test_x, test_y, epochs=epochs, lr=lr, weight_decay=weight_decay,
                       batch_size=batch_size)
    res.update(step=state["step"], note="test_acc is the last probe epoch's accuracy (not the best over epochs)")
    path = save_json((out or run_dir) / "probe.json", res)
    console.print(f"linear probe, step {state['step']}: test accuracy {100 * res['test_acc']:.2f}% "
                  f"(last of {epochs} epochs; best over epochs would be {100 * res['best_test_acc_optimistic']:.2f}%)")
    wrote([path])


def compare(
    run_dirs: list[Path] = typer.Argument(..., help="one or more folders of training runs"),
    modes: int = typer.Option(8, help="leading modes of F to compare"),
    sigma2: float = typer.Option(None, help="augmentation variance σ² assumed for image runs [synthetic: the run's; "
                                            "images: 0.5]"),
    out: Path = typer.Option(Path("runs/compare"), help="where compare.png and compare.json go"),
) -> None:
    """The theory's prediction beside what a run measured: modes p_j, s_j, phase portrait, alignment."""
    from ssltheory.practice.compare import compare_run, to_json
    from ssltheory.practice.plots import compare_figure
    from ssltheory.theory.params import check_int, check_number

    check_int("--modes", modes, low=1)
    if sigma2 is not None:
        check_number("--sigma2", sigma2, low=0.0)
    comparisons = [compare_run(d, modes, sigma2) for d in run_dirs]
    out.mkdir(parents=True, exist_ok=True)
    paths = [save_figure(compare_figure(comparisons), out / "compare.png"),
             save_json(out / "compare.json", {"runs": [to_json(c) for c in comparisons]})]
    table = Table("run", "p final", "p path", "s path", "in claim", "assumed",
                  title="theory vs run: relative error of the worst mode; assumptions met")
    for c in comparisons:
        a = c.agreement
        met = sum(x["holds"] for x in c.assumptions)
        table.add_row(Path(c.run).name, f"{a['p']['max_final_rel_err']:.1%}",
                      f"{a['p']['max_trajectory_rel_err']:.1%}",
                      f"{a['s']['max_trajectory_rel_err']:.1%}", "yes" if a["within_claim"] else "no",
                      f"{met}/{len(c.assumptions)}")
    console.print(table)
    wrote(paths)


def report(
    run_dir: Path = typer.Argument(..., help="folder of a training run"),
    modes: int = typer.Option(8, help="leading modes of F in the compare section"),
    out: Path = typer.Option(None, help="HTML file to write [default: RUN_DIR/report.html]"),
) -> None:
    """One self-contained HTML page for a run: settings, its figures, the theory beside it, final numbers."""
    from ssltheory.practice.report import build_report
    from ssltheory.theory.io import write_atomic
    from ssltheory.theory.params import check_int

    check_int("--modes", modes, low=1)
    path = out or run_dir / "report.html"
    text = build_report(run_dir, modes)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode())
    wrote([path])
