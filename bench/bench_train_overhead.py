"""Cost of DirectPred and the live measurements relative to a plain BYOL step, on CPU, in one run.

On this noisy 2-core machine two separate runs of the same config differ by up to 10%, more than the effect being
measured, so the main number is taken inside ONE run of the full configuration (digits, BYOL, the default convnet,
batch 128, DirectPred, every live measurement at the default interval of 50 steps): the time spent in the extra work
is clocked where it happens, and the rest of the run is the plain BYOL step (data loading and augmentation, forward,
backward, optimiser, EMA). The extra work is
- the running correlation F̂ of the predictor input (every step),
- DirectPred's eigendecomposition of F̂ and W_p = U diag(p) U^T (every step),
- the live measurement (spectra of F̂ and W_p, alignment, asymmetry, collapse AUC of the 512-image probe set on
  backbone and projector, feature std), every ``--measure-every`` steps.
Prints overhead = extra / plain (target <= 0.05). As a cross-check it also times whole runs of the plain config
(linear predictor, no measurements) against the full one, interleaved, and prints that noisier ratio, and what one
kNN evaluation costs.

    python bench/bench_train_overhead.py [--steps 300] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.datasets import build_data
from ssltheory.practice.engine import train as train_mod
from ssltheory.practice.engine.step import build_model, resolve_device
from ssltheory.practice.measure.evaluate import knn_monitor
from ssltheory.practice.measure.live import LiveMeasurer
from ssltheory.practice.measure.running import RunningCorrelation
from ssltheory.practice.methods.predictors import DirectPredictor


def timed_steps(cfg: TrainConfig, skip: int = 10) -> float:
    """Seconds per step between step ``skip`` and the last step (set-up and warm-up excluded)."""
    marks: dict[int, float] = {}

    def on_progress(p) -> None:
        marks[p.step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as d:
        train_mod.train(cfg, d, on_progress=on_progress)
    last = max(marks)
    return (marks[last] - marks[skip]) / (last - skip)


def clocked(fn: Callable, bucket: str, clock: dict[str, float]) -> Callable:
    """Wrap ``fn`` so the seconds spent in it add up in ``clock[bucket]``."""

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock[bucket] += time.perf_counter() - t0

    return wrapper


def overhead_in_one_run(cfg: TrainConfig, skip: int = 10) -> tuple[float, dict[str, float], int]:
    """Run ``cfg`` once with the extra work clocked, from step ``skip`` to the end.

    Returns (seconds of that window, seconds per extra bucket within it, steps in it).
    """
    clock: dict[str, float] = defaultdict(float)
    marks: dict[int, tuple[float, dict[str, float]]] = {}

    def on_progress(p) -> None:
        marks[p.step] = (time.perf_counter(), dict(clock))

    patched = [(RunningCorrelation, "update"), (DirectPredictor, "after_step"), (LiveMeasurer, "submit")]
    saved = [getattr(owner, name) for owner, name in patched]
    for (owner, name), fn in zip(patched, saved, strict=True):
        setattr(owner, name, clocked(fn, name, clock))
    try:
        with tempfile.TemporaryDirectory() as d:
            train_mod.train(cfg, d, on_progress=on_progress)
    finally:
        for (owner, name), fn in zip(patched, saved, strict=True):
            setattr(owner, name, fn)
    last = max(marks)
    (t0, c0), (t1, c1) = marks[skip], marks[last]
    return t1 - t0, {k: c1[k] - c0.get(k, 0.0) for k in c1}, last - skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved whole-run pairs for the cross-check")
    args = ap.parse_args()
    base = dict(dataset="digits", epochs=10_000, max_steps=args.steps, knn_every=0, checkpoint_every=10**9)
    torch.manual_seed(0)
    plain_cfg = TrainConfig(predictor="linear", measure_every=10**9, **base)
    full_cfg = TrainConfig(predictor="directpred", measure_every=50, **base)

    window, clock, steps = overhead_in_one_run(full_cfg)
    extra = sum(clock.values())
    plain_s = window - extra
    print(f"one run, {steps} steps timed, DirectPred + live measurements: {window:.1f} s "
          f"({1e3 * window / steps:.1f} ms/step)")
    for name, s in clock.items():
        print(f"  {name:<12} {1e3 * s / steps:6.2f} ms/step  ({100 * s / plain_s:.2f}% of the plain step)")
    print(f"overhead: {100 * extra / plain_s:.2f}% of a plain BYOL step ({1e3 * plain_s / steps:.1f} ms/step) "
          f"(target <= 5%)")

    plains, fulls = [], []
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both alike
        plains.append(timed_steps(plain_cfg))
        fulls.append(timed_steps(full_cfg))
    ratios = ", ".join(f"{f / p:.3f}" for p, f in zip(plains, fulls, strict=True))
    print(f"cross-check, whole runs: full / plain = {statistics.median(fulls) / statistics.median(plains):.3f} "
          f"(per pair {ratios}; run-to-run noise here is about +-8%)")

    cfg = TrainConfig(predictor="linear", epochs=1, knn_every=1)
    dev = resolve_device("cpu")
    data = build_data(cfg)
    model = build_model(cfg, data.in_channels, dev)
    t0 = time.perf_counter()
    knn_monitor(model.online.backbone, data.train_eval, data.test_eval, dev, model.dist, cfg.knn_k, cfg.knn_t,
                data.num_classes)
    knn_s = time.perf_counter() - t0
    print(f"one kNN evaluation (1,797 digits): {knn_s:.2f} s = {knn_s * steps / plain_s:.1f} plain steps "
          f"(per epoch by default; --knn-every N spaces it out)")


if __name__ == "__main__":
    main()
