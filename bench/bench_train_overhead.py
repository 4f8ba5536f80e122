"""Cost of DirectPred and the live measurements relative to a plain BYOL step, on CPU, in one run.

Runs the real training loop twice on digits (BYOL, the default convnet, batch 128) for the same number of steps:
- plain: linear predictor trained by SGD, no measurements (measure_every larger than the run), no kNN;
- full:  DirectPred (eigendecomposition of F̂ every step) + every live measurement at the default interval
         (spectra of F̂ and W_p, alignment, asymmetry, collapse AUC of the 512-image probe set, feature std).
Prints the ratio of their step times (target: <= 1.05) and, separately, what one kNN evaluation costs in steps.

    python bench/bench_train_overhead.py [--steps 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.train import train


def timed_steps(cfg: TrainConfig, skip: int = 10) -> float:
    """Seconds per step between step ``skip`` and the last step (set-up and warm-up excluded)."""
    marks: dict[int, float] = {}

    def on_progress(p) -> None:
        marks[p.step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as d:
        train(cfg, d, on_progress=on_progress)
    last = max(marks)
    return (marks[last] - marks[skip]) / (last - skip)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    base = dict(dataset="digits", epochs=10_000, max_steps=args.steps, knn_every=0, checkpoint_every=10**9)
    torch.manual_seed(0)
    plain = timed_steps(TrainConfig(predictor="linear", measure_every=10**9, **base))
    full = timed_steps(TrainConfig(predictor="directpred", measure_every=50, **base))
    plain2 = timed_steps(TrainConfig(predictor="linear", measure_every=10**9, **base))
    plain = min(plain, plain2)  # two plain runs bracket the full one: take the faster as the baseline
    cfg = TrainConfig(predictor="linear", epochs=1, knn_every=1)
    from ssltheory.practice.data import build_data
    from ssltheory.practice.train import _knn, build_model, resolve_device

    dev = resolve_device("cpu")
    data = build_data(cfg)
    model = build_model(cfg, data.in_channels, dev)
    t0 = time.perf_counter()
    _knn(model, data, cfg, dev)
    knn_s = time.perf_counter() - t0
    print(f"plain BYOL step: {1e3 * plain:.1f} ms; DirectPred + live measurements: {1e3 * full:.1f} ms")
    print(f"overhead ratio: {full / plain:.3f} (target <= 1.05)")
    print(f"one kNN evaluation (1,797 digits): {knn_s:.2f} s = {knn_s / plain:.1f} plain steps "
          f"(per epoch by default; --knn-every N spaces it out)")


if __name__ == "__main__":
    main()
