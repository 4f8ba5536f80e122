"""Where a BYOL ResNet-18 step's time goes on one device: data path alone, model step alone (fixed views), the
DirectPred eigendecomposition, one live measurement; then torch.profiler's top operators of full steps.

    python bench/profile_step.py [--dataset cifar10] [--device cuda] [--steps 30]
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_throughput import SIZES, Runner, sync

from ssltheory.practice.predictors import directpred_weight
from ssltheory.practice.train import _measure


def per_call(fn, n: int, device: torch.device) -> float:
    fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    r = Runner(a.dataset, "directpred", "bf16", "device", device, n=20_000, workers=0, measure=False,
               compile_=a.compile)
    batch = SIZES[a.dataset][1]
    r.block(5)
    x1, x2 = r._next()
    feed_s = per_call(lambda: r._next(), a.steps, device)
    params = r.feed.aug.params(batch, *r.feed.images.shape[-2:])
    aug_gpu_s = per_call(lambda: r.feed.aug(r.feed.images[:batch], params), a.steps, device)
    sample_s = per_call(lambda: r.feed.aug.params(batch, *r.feed.images.shape[-2:]), a.steps, device)
    F = r.model.corr.F.to(device)
    eigh_s = per_call(lambda: directpred_weight(F, 0.1), a.steps, device)
    eigh_cpu_s = per_call(lambda: directpred_weight(F.cpu(), 0.1), a.steps, device)

    def model_only() -> None:
        from ssltheory.practice.train import train_step

        loss, _ = train_step(r.model, x1, x2, r.cfg)
        r.opt.zero_grad(set_to_none=True)
        loss.backward()
        r.opt.step()

    model_s = per_call(model_only, a.steps, device)
    meas_s = per_call(lambda: _measure(r.model, r.probe, x1.new_zeros(batch, 128), r.cfg, device), 3, device)
    full_s = r.block(a.steps) / a.steps
    print(f"{a.dataset} batch {batch}: full step {1e3 * full_s:.1f} ms | data path (index + 2 views) "
          f"{1e3 * feed_s:.1f} ms, of which sampling params on CPU {1e3 * sample_s:.1f} ms, augment on device "
          f"{1e3 * aug_gpu_s:.1f} ms | model fwd+bwd+SGD {1e3 * model_s:.1f} ms | DirectPred eigh on device "
          f"{1e3 * eigh_s:.2f} ms, on CPU {1e3 * eigh_cpu_s:.2f} ms | one measurement {1e3 * meas_s:.1f} ms")
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            r.block(10)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=45))


if __name__ == "__main__":
    main()
