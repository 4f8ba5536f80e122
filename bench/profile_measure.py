"""cProfile of one live measurement (queueing its snapshot, then its record) on a BYOL ResNet-18 at CIFAR size:
which calls take its time.

    python bench/profile_measure.py [--device cuda]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import torch
from bench_throughput import Runner

from ssltheory.practice.measure.live import record, snapshot
from ssltheory.practice.methods.objectives import Views

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    device = torch.device(a.device)
    r = Runner("cifar10", "directpred", "bf16", "device", device, n=2_000, workers=0, measure=True)
    r.block(3)
    f, loss = torch.randn(512, 128, device=device), torch.zeros((), device=device)
    probe_x = r.live.probe_x
    record(snapshot(r.model, probe_x, Views.of(f), loss, {}))
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        record(snapshot(r.model, probe_x, Views.of(f), loss, {}))
    if device.type == "cuda":
        torch.cuda.synchronize()
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(22)
