"""Images/s of BYOL ResNet-18 training steps at CIFAR-10 (32 px) and STL-10 (96 px) sizes, on synthetic uint8
images, through the trainer's own pieces (build_model, the two data paths, optimizer_step with DirectPred and the
EMA, the live measurements, the finiteness check every 10 steps).

Every ratio comes from ONE process, the variants timed in interleaved blocks (A B A B ...), medians of the blocks
(the DataLoader variant after the others, as its idle persistent workers would slow the host under the others):
- device data path (dataset on the GPU, batched augmentation) vs the DataLoader path (per-image torchvision v2,
  ``--workers`` processes, pinned memory, persistent workers);
- the full product step (DirectPred every step + a live measurement every 50 steps) vs DirectPred without
  measurements (the overhead of the theory's measurements, target <= 2%) vs a plain BYOL step (SGD-trained linear
  predictor, no measurements: the overhead of DirectPred), DirectPred's W_p from Newton-Schulz (the CUDA default)
  and from the eigendecomposition (which makes every step wait for the device);
- the step replayed from a CUDA graph (the default on CUDA) vs eager;
- bf16 autocast vs fp32; optionally torch.compile modes (``--compile default,reduce-overhead``).
Epoch seconds = dataset size (CIFAR-10 50,000; STL-10 train+unlabeled 105,000) / images per second.

    python bench/bench_throughput.py [--device cuda] [--sizes cifar10,stl10] [--steps 40] [--workers 12]
                                     [--compile MODES] [--no-loader]
    python bench/bench_throughput.py --device cpu --quick        # a smoke run of the same code (no GPU)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.augment import TwoViews
from ssltheory.practice.data.feed import DeviceFeed, LoaderFeed
from ssltheory.practice.data.schedule import make_schedule
from ssltheory.practice.engine.distributed import Dist
from ssltheory.practice.engine.optim import make_optimizer
from ssltheory.practice.engine.step import build_model, optimizer_step
from ssltheory.practice.measure.live import LiveMeasurer

SIZES = {"cifar10": (32, 512, 50_000), "stl10": (96, 256, 105_000)}  # px, batch, images per epoch


class UInt8Views(Dataset):
    """((v1, v2), 0) from uint8 (C, H, W) images through the CPU torchvision pipeline (the loader path)."""

    def __init__(self, images: torch.Tensor, dataset: str, size: int) -> None:
        self.images, self.views = images, TwoViews(dataset, size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.views(self.images[i]), 0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One configured model + data path; ``block(n)`` runs n steps and returns seconds."""

    def __init__(self, dataset: str, predictor: str, precision: str, path: str, device: torch.device, n: int,
                 workers: int, measure: bool, compile_: str = "none", graph: str = "auto",
                 solver: str = "auto") -> None:
        size, batch, _ = SIZES[dataset]
        self.cfg = TrainConfig(dataset=dataset, predictor=predictor, precision=precision, data_path=path,
                               batch_size=batch, device=str(device), workers=workers, compile=compile_,
                               cuda_graph=graph, measure_every=50, directpred_solver=solver)
        self.device = device
        g = torch.Generator().manual_seed(0)
        imgs = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        schedule = make_schedule(self.cfg, n)
        if path == "device":
            layout = imgs.permute(0, 2, 3, 1).numpy() if dataset == "cifar10" else imgs.numpy()
            self.feed = DeviceFeed(self.cfg, SimpleNamespace(data=layout), device, Dist(), schedule)
        else:
            self.feed = LoaderFeed(self.cfg, UInt8Views(imgs, dataset, size), device, Dist(), schedule)
        self.model = build_model(self.cfg, 3, device)
        self.opt = make_optimizer(self.cfg, self.model.online, self.model.predictor)
        probe = imgs[:512].float() / 255
        self.probe = TensorDataset(probe, torch.zeros(len(probe), dtype=torch.long))
        self.live = LiveMeasurer(self.probe, device, Dist(), background=device.type == "cuda") if measure else None
        self.step, self.epoch, self.batches, self.losses = 0, 0, iter(()), []

    def _next(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.epoch += 1
            self.batches = self.feed.epoch(self.epoch, 0)
            return next(self.batches)

    def block(self, n: int) -> float:
        """Seconds for n training steps as the trainer runs them, with a live measurement at the block's first step
        and every ``measure_every`` steps after it (the trainer's rate). Its record is computed in the background
        while the block goes on, as in the trainer, and the block waits for it at its end: a record that takes
        longer than the rest of the block is charged to it (the trainer waits only before a checkpoint)."""
        sync(self.device)
        t = time.perf_counter()
        for i in range(n):
            x1, x2 = self._next()
            loss, views = optimizer_step(self.model, self.opt, None, (x1, x2), self.cfg, self.step, 10**6,
                                         self.feed.prefetch)
            self.step += 1
            self.losses.append(loss.detach().clone())  # (a CUDA graph's output is rewritten by the next step)
            if self.step % 10 == 0 and not bool(torch.isfinite(torch.stack(self.losses[-10:])).all()):
                raise RuntimeError("loss is not finite")
            if self.live is not None:
                if i % self.cfg.measure_every == 0:
                    self.live.submit(self.model, views, torch.stack(self.losses).double().mean(), {"step": self.step})
                    self.losses = []
                self.live.ready()
            self.losses = self.losses[-10:]
        if self.live is not None:
            self.live.ready(wait=True)
        sync(self.device)
        return time.perf_counter() - t


def interleaved(runners: dict[str, Runner], steps: int, repeats: int, warmup: int) -> dict[str, float]:
    """Median seconds per step of each runner over ``repeats`` interleaved blocks of ``steps``."""
    for r in runners.values():
        r.block(warmup)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for k, r in runners.items():
            times[k].append(r.block(steps) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default="cifar10,stl10")
    ap.add_argument("--steps", type=int, default=50, help="steps per timed block (one measurement per 50 steps)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=12, help="DataLoader workers of the loader path")
    ap.add_argument("--images", type=int, default=20_000, help="synthetic images held (the epoch length is the "
                                                                   "real dataset's)")
    ap.add_argument("--compile", default="", help="also time these torch.compile modes, comma-separated (default, "
                                                  "reduce-overhead, max-autotune; slow to start)")
    ap.add_argument("--no-loader", action="store_true", help="skip the DataLoader variant")
    ap.add_argument("--quick", action="store_true", help="tiny run of the same code (CPU smoke test)")
    ap.add_argument("--json", default="", help="also write the numbers here")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    if a.quick:
        SIZES.update({k: (v[0], 16, v[2]) for k, v in SIZES.items()})
        a.steps, a.repeats, a.images, a.workers = 2, 1, 64, 0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}")
    results = {"device": name, "torch": torch.__version__, "sizes": {}}
    for ds in a.sizes.split(","):
        size, batch, epoch_images = SIZES[ds]
        mk = dict(device=device, n=a.images, workers=a.workers)
        variants = {
            "device bf16 plain": Runner(ds, "linear", "bf16", "device", measure=False, **mk),
            "device bf16 directpred": Runner(ds, "directpred", "bf16", "device", measure=False, **mk),
            "device bf16 directpred eigh": Runner(ds, "directpred", "bf16", "device", measure=False, solver="eigh",
                                                  **mk),
            "device bf16 full": Runner(ds, "directpred", "bf16", "device", measure=True, **mk),
            "device bf16 full eager": Runner(ds, "directpred", "bf16", "device", measure=True, graph="off", **mk),
            "device fp32 full": Runner(ds, "directpred", "fp32", "device", measure=True, **mk),
        }
        modes = [m for m in a.compile.split(",") if m]
        for mode in modes:
            variants[f"device bf16 full {mode}"] = Runner(ds, "directpred", "bf16", "device", measure=True,
                                                          compile_=mode, **mk)
        sec = interleaved(variants, a.steps, a.repeats, warmup=max(3, a.steps // 5))
        if not a.no_loader:  # after the others: its persistent workers keep the host's cores busy between blocks
            loader = Runner(ds, "directpred", "bf16", "loader", measure=True, **mk)
            sec.update(interleaved({"loader bf16 full": loader}, a.steps, a.repeats, warmup=max(3, a.steps // 5)))
            del loader
        rows = {k: {"ms_per_step": 1e3 * v, "images_per_s": batch / v, "epoch_s": epoch_images / (batch / v)}
                for k, v in sec.items()}
        full, direct = sec["device bf16 full"], sec["device bf16 directpred"]
        ratios = {"measurement overhead (full / directpred - 1)": full / direct - 1,
                  "DirectPred overhead (directpred / plain - 1)": direct / sec["device bf16 plain"] - 1,
                  "DirectPred eigh overhead (directpred eigh / plain - 1)":
                      sec["device bf16 directpred eigh"] / sec["device bf16 plain"] - 1,
                  "bf16 speed-up over fp32": sec["device fp32 full"] / full,
                  "CUDA graph speed-up over eager": sec["device bf16 full eager"] / full}
        if not a.no_loader:
            ratios["device path speed-up over loader"] = sec["loader bf16 full"] / full
        for mode in modes:
            ratios[f"compile {mode} speed-up"] = full / sec[f"device bf16 full {mode}"]
        results["sizes"][ds] = {"image_px": size, "batch": batch, "epoch_images": epoch_images, "rows": rows,
                                "ratios": ratios}
        print(f"\n{ds}: ResNet-18 BYOL, {size} px, batch {batch}, epoch = {epoch_images:,} images")
        print(f"{'variant':30s} {'ms/step':>9s} {'images/s':>10s} {'epoch s':>8s}")
        for k, r in rows.items():
            print(f"{k:30s} {r['ms_per_step']:9.1f} {r['images_per_s']:10.0f} {r['epoch_s']:8.2f}")
        for k, v in ratios.items():
            print(f"  {k}: {v:.3f}")
        del variants
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    np.set_printoptions()


if __name__ == "__main__":
    main()
