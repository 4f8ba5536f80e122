"""Where a Fashion-MNIST training step's time goes on the CPU, and what a 3,000-step run costs, in one run.

One real run of the table recipes' network (``train fashion-mnist``: BYOL, DirectPred, the 28 px convnet, batch 128,
the batched in-memory path, live measurements every 50 steps) is clocked where its work happens:

- augmentation: the batched views of the next batch (:class:`~ssltheory.practice.data.batch_augment.BatchViews`);
- forward + backward + optimizer: both branches, the loss, backward, SGD and the EMA;
- DirectPred: the running correlation F̂ and W_p from its eigendecomposition, every step;
- measurements: the live record (spectra, alignment, probe AUC) every ``--measure-every`` steps;
- kNN: one evaluation over the whole 60,000-image bank and the 10,000 test images (done every ``--knn-every``
  epochs; reported once, and per step at one evaluation per epoch).

Beside it, in the same process, the same model's bare step on one batch made before the clock starts: both branches'
forward, the loss, backward, SGD and the EMA, with no augmentation, no DirectPred and no measurement. Prints the split,
the ratio of the full step (DirectPred and measurements included, kNN excluded) to the bare one (goal <= 1.3), and the
wall time of a 3,000-step run extrapolated from the measured step (goal <= 8 min on the idle 2-core box), with the
settings compared by ``--widths`` (the convnet's channel multiplier).

    python bench/bench_fmnist_step.py --data-dir /usr/share/datasets/fashion-mnist [--steps 120] [--widths 1,0.5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from bench_train_overhead import clocked as clock_seconds  # (this folder: the script's own)

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data import feed as feed_mod
from ssltheory.practice.data.datasets import build_data
from ssltheory.practice.engine import step as step_mod
from ssltheory.practice.engine import train as train_mod
from ssltheory.practice.engine.optim import make_optimizer
from ssltheory.practice.measure.evaluate import knn_monitor
from ssltheory.practice.measure.live import LiveMeasurer
from ssltheory.practice.measure.running import RunningCorrelation
from ssltheory.practice.methods.predictors import DirectPredictor

RESULTS = Path(__file__).parent / "results"


def clocked(owner, name: str, bucket: str, clock: dict[str, float]) -> Callable[[], None]:
    """Wrap ``owner.name`` (:func:`bench_train_overhead.clocked`) so the seconds spent in it add up in
    ``clock[bucket]``; returns the undo."""
    fn = getattr(owner, name)
    setattr(owner, name, clock_seconds(fn, bucket, clock))
    return lambda: setattr(owner, name, fn)


def clocked_generator(owner, name: str, bucket: str, clock: dict[str, float]) -> Callable[[], None]:
    """As :func:`clocked` for a method returning a generator: the time of each ``next`` is clocked."""
    fn = getattr(owner, name)

    def wrapper(*args, **kwargs):
        gen = fn(*args, **kwargs)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(gen)
            except StopIteration:
                clock[bucket] += time.perf_counter() - t0
                return
            clock[bucket] += time.perf_counter() - t0
            yield item

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, fn)


def full_run(cfg: TrainConfig, skip: int = 10) -> tuple[float, dict[str, float]]:
    """Seconds per step of a real run after ``skip`` warm-up steps, and the clocked seconds per step of each part."""
    clock: dict[str, float] = defaultdict(float)
    undo = [clocked_generator(feed_mod.DeviceFeed, "_batches", "augmentation", clock),
            clocked(step_mod, "optimizer_step", "step", clock),
            clocked(RunningCorrelation, "update", "directpred", clock),
            clocked(DirectPredictor, "after_step", "directpred", clock),
            clocked(LiveMeasurer, "submit", "measurements", clock),
            clocked(LiveMeasurer, "ready", "measurements", clock)]
    train_mod.optimizer_step = step_mod.optimizer_step  # the loop's own reference
    marks: dict[int, float] = {}
    at_skip: dict[str, float] = {}

    def on_progress(p) -> None:
        marks[p.step] = time.perf_counter()
        if p.step == skip:
            at_skip.update(clock)

    try:
        with tempfile.TemporaryDirectory() as d:
            train_mod.train(cfg, d, on_progress=on_progress)
    finally:
        for u in undo:
            u()
        train_mod.optimizer_step = step_mod.optimizer_step
    last = max(marks) - 1  # the last step ends with the run's closing kNN: timed on its own below
    n = last - skip
    per = {k: (clock[k] - at_skip.get(k, 0.0)) / n for k in clock}
    # optimizer_step holds the prefetched augmentation and DirectPred's after_step: take them out of it
    per["forward + backward + optimizer"] = per.pop("step") - per["augmentation"] - per["directpred"]
    return (marks[last] - marks[skip]) / n, per


def bare_step(cfg: TrainConfig, device: torch.device, repeats: int) -> float:
    """Seconds of the same model's bare step on one batch of views made before the clock starts: both branches'
    forward, the loss, backward and SGD (what the network itself costs), with no augmentation, no DirectPred (the
    predictor's hook and F̂ are left out) and no measurement."""
    data = build_data(cfg)
    model = step_mod.build_model(cfg, data.in_channels, device)
    opt = make_optimizer(cfg, model.online, model.predictor)
    images = data.ssl.images[: cfg.batch_size].float().div(255)
    x1, x2 = images, images.flip(-1)
    if model.channels_last:
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    times = []
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        loss, _ = step_mod.forward_views(model, x1, x2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.target.after_step(model.online, i, repeats + 3)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--widths", default="1,0.5")
    ap.add_argument("--channels-last", default="auto", help="auto | on | off (the setting of the same name)")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    threads = torch.get_num_threads()
    rows = []
    for width in [float(w) for w in args.widths.split(",")]:
        cfg = TrainConfig(dataset="fashion-mnist", data_dir=args.data_dir, predictor="directpred", width=width,
                          batch_size=args.batch_size, max_steps=args.steps, measure_every=50, knn_every=0,
                          epochs=1, device="cpu", channels_last=args.channels_last)
        per_step, split = full_run(cfg)
        bare = bare_step(cfg, torch.device("cpu"), repeats=20)
        data = build_data(cfg)
        model = step_mod.build_model(cfg, data.in_channels, torch.device("cpu"))
        t0 = time.perf_counter()
        knn = knn_monitor(model.online.backbone, data.train_eval, data.test_eval, torch.device("cpu"),
                          step_mod.Dist(), cfg.knn_k, cfg.knn_t, data.num_classes)
        knn_s = time.perf_counter() - t0
        steps_per_epoch = len(data.ssl) // cfg.batch_size
        row = {"width": width, "channels_last": cfg.resolved_channels_last("cpu"), "batch": cfg.batch_size, "threads":
        threads, "step_s": per_step,
               "split_s": split, "bare_fwd_bwd_s": bare, "full_over_bare": per_step / bare,
               "knn_s": knn_s, "knn_per_step_at_one_per_epoch_s": knn_s / steps_per_epoch, "knn_at_init": knn,
               "run_3000_steps_min": 3000 * per_step / 60,
               "run_3000_steps_with_knn_every_epoch_min": (3000 * per_step + 3000 / steps_per_epoch * knn_s) / 60}
        rows.append(row)
        print(f"width {width:g}, channels_last {cfg.resolved_channels_last('cpu')}: step {per_step * 1e3:.0f} ms = " +
        ", ".join(
            f"{k} {v * 1e3:.0f} ms" for k, v in sorted(split.items(), key=lambda kv: -kv[1])) +
            f"; bare fwd+bwd {bare * 1e3:.0f} ms; full / bare {per_step / bare:.2f} (goal <= 1.3); kNN over 60k "
            f"{knn_s:.1f} s ({knn_s / steps_per_epoch * 1e3:.0f} ms a step at one per epoch); 3,000 steps "
            f"{3000 * per_step / 60:.1f} min (goal <= 8)", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fmnist_step_cpu_{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps({"cpu": _cpu(), "threads": threads, "torch": torch.__version__, "rows": rows},
                              indent=1) + "\n")
    print(f"wrote {out}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
