"""CPU cost of one live-measurement record computed in the background worker thread: the default thread pools vs
:func:`ssltheory.practice.measure.live.one_thread` (torch and OpenBLAS on one core), in one run.

The record is computed while the training thread keeps the GPU fed, so what it costs the run is the CPU it takes
from that thread: its CPU seconds per record (counted until the pools' idle threads stop spinning, ``--settle``
seconds after the last record) against its wall seconds. The snapshot has the shapes of a BYOL ResNet-18 run at the
defaults (probe 512 images: backbone features 512 x 512, projector outputs 512 x 128; F̂ and W_p 128 x 128).

    python bench/bench_live_record.py [--records 8] [--repeats 3] [--settle 0.3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from contextlib import nullcontext

import torch

from ssltheory.practice.measure.live import Snapshot, one_thread, record


def snapshot_like(seed: int, n: int = 512, width: int = 512, d: int = 128) -> Snapshot:
    """Host tensors of a measurement's snapshot (random, the trained network's shapes)."""
    g = torch.Generator().manual_seed(seed)
    F = torch.randn(d, d, dtype=torch.float64, generator=g)
    tensors = {"feats": torch.randn(n, width, generator=g), "proj": torch.randn(n, d, generator=g),
               "f": torch.randn(n, d, generator=g), "loss": torch.zeros(()), "F": F @ F.T / d,
               "W_p": torch.randn(d, d, generator=g)}
    return Snapshot({"step": seed}, tensors)


def in_worker(snaps: list[Snapshot], limited: bool, settle: float) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per record, computed one after another in a fresh thread."""
    out: dict[str, float] = {}

    def work() -> None:
        t = time.perf_counter()
        for s in snaps:
            with one_thread() if limited else nullcontext():
                record(s)
        out["wall"] = time.perf_counter() - t

    cpu = time.process_time()
    th = threading.Thread(target=work)
    th.start()
    th.join()
    time.sleep(settle)  # idle OpenBLAS / OpenMP threads spin for a while after a call: count that too
    return out["wall"] / len(snaps), (time.process_time() - cpu) / len(snaps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--settle", type=float, default=0.3)
    a = ap.parse_args()
    snaps = [snapshot_like(i) for i in range(a.records)]
    record(snaps[0])
    rows: dict[str, list[tuple[float, float]]] = {"default pools": [], "one_thread": []}
    for _ in range(a.repeats):  # interleaved
        rows["default pools"].append(in_worker(snaps, False, a.settle))
        rows["one_thread"].append(in_worker(snaps, True, a.settle))
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} intra-op threads)")
    med = {}
    for k, v in rows.items():
        wall, cpu = statistics.median(w for w, _ in v), statistics.median(c for _, c in v)
        med[k] = (wall, cpu)
        print(f"{k:14s} wall {1e3 * wall:7.1f} ms/record, CPU {1e3 * cpu:7.1f} ms/record, cores busy {cpu / wall:5.2f}")
    print(f"CPU per record, default / one_thread: {med['default pools'][1] / med['one_thread'][1]:.2f}x; "
          f"wall: {med['default pools'][0] / med['one_thread'][0]:.2f}x")


if __name__ == "__main__":
    main()
