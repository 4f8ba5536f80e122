"""Where a BYOL ResNet-18 step's time goes on one device, each part free-running (one wait at the end of each loop):

- the data path alone (index + both views), the model step alone (fixed views), a full step;
- the DirectPred eigendecomposition; queueing a live measurement and computing its record;
- on CUDA: every place a step waits for the device (``torch.cuda.set_sync_debug_mode``), the device's busy time
  per step (sum of kernel times from torch.profiler) against the wall time (busy << wall: the host is the limit),
  and the top kernels.

    python bench/profile_step.py [--dataset cifar10] [--device cuda] [--steps 30] [--predictor directpred]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter

import torch
from bench_throughput import SIZES, Runner, sync

from ssltheory.practice.engine.step import optimizer_step
from ssltheory.practice.measure.live import record, snapshot
from ssltheory.practice.methods.objectives import Views
from ssltheory.practice.methods.predictors import directpred_weight, directpred_weight_ns


def per_call(fn, n: int, device: torch.device, host: dict | None = None, key: str = "") -> float:
    """Seconds per call of ``fn`` free-running (one wait at the end); ``host[key]``: the host's share (the loop's
    time before that wait)."""
    fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    if host is not None:
        host[key] = (time.perf_counter() - t) / n
    sync(device)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--predictor", default="directpred")
    ap.add_argument("--compile", default="none", help="torch.compile mode")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    r = Runner(a.dataset, a.predictor, "bf16", "device", device, n=20_000, workers=0, measure=True,
               compile_=a.compile)
    batch = SIZES[a.dataset][1]
    r.block(5)
    x1, x2 = r._next()
    host: dict[str, float] = {}
    feed_s = per_call(lambda: r._next(), a.steps, device, host, "feed")
    H, W = r.feed.images.shape[-2:]
    sample_s = per_call(lambda: r.feed.aug.params(batch, H, W), a.steps, device)
    F = r.model.corr.F.to(device)
    eigh_s = per_call(lambda: directpred_weight(F, 0.1), a.steps, device)
    ns_s = per_call(lambda: directpred_weight_ns(F, 0.1), a.steps, device, host, "ns")
    model_s = per_call(lambda: optimizer_step(r.model, r.opt, None, (x1, x2), r.cfg, 0, 10**6), a.steps, device, host,
                       "model")
    if r.model.graph is not None:
        replay_s = per_call(lambda: r.model.graph(x1, x2), a.steps, device, host, "replay")
        print(f"CUDA graph replay (forward + backward) {1e3 * replay_s:.1f} ms, host {1e3 * host['replay']:.2f} ms")
    f1 = x1.new_zeros(batch, r.cfg.proj_dim)
    loss = torch.zeros((), device=device)
    queue_s = per_call(lambda: snapshot(r.model, r.live.probe_x, Views.of(f1), loss, {}), 5, device)
    snap = snapshot(r.model, r.live.probe_x, Views.of(f1), loss, {})
    record_s = per_call(lambda: record(snap), 3, device)
    full_s = r.block(a.steps) / a.steps
    print(f"{a.dataset} batch {batch}, {a.predictor}: full step {1e3 * full_s:.1f} ms (a measurement every "
          f"{r.cfg.measure_every}) | data path (index + 2 views) {1e3 * feed_s:.1f} ms, of which sampling parameters "
          f"on the CPU {1e3 * sample_s:.1f} ms | model step (fwd + bwd + SGD + predictor + EMA) {1e3 * model_s:.1f} "
          f"ms | DirectPred W_p: eigh {1e3 * eigh_s:.2f} ms, Newton-Schulz {1e3 * ns_s:.2f} ms (host "
          f"{1e3 * host['ns']:.2f} ms) | measurement: queueing {1e3 * queue_s:.1f} ms, record on "
          f"the CPU (background) {1e3 * record_s:.1f} ms | host time of the data path {1e3 * host['feed']:.1f} ms, "
          f"of the model step {1e3 * host['model']:.1f} ms")
    if device.type != "cuda":
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        r.block(r.cfg.measure_every)
        torch.cuda.set_sync_debug_mode(0)
    where = Counter(f"{w.filename.split('ssltheory')[-1]}:{w.lineno} {str(w.message)[:60]}" for w in caught)
    print(f"waits for the device in {r.cfg.measure_every} steps (incl. one measurement and the block's end):")
    for k, v in where.most_common(25):
        print(f"  {v:4d} x {k}")
    from torch.profiler import ProfilerActivity, profile

    n = 20
    sync(device)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        r.block(n)
    wall = (time.perf_counter() - t) / n
    ev = prof.key_averages()
    kernels = [e for e in ev if not e.key.startswith(("aten::", "cuda", "Memcpy", "Memset", "ProfilerStep"))]
    busy = sum(e.self_device_time_total for e in kernels) / 1e3 / n  # us -> ms, kernels only (ops list them too)
    print(f"under the profiler: wall {1e3 * wall:.1f} ms/step, device busy {busy:.1f} ms/step "
          f"({100 * busy / (1e3 * wall):.0f}%)")
    print(ev.table(sort_by="self_device_time_total", row_limit=22, max_name_column_width=60))


if __name__ == "__main__":
    main()
