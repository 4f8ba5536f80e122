"""Images/s of BYOL ResNet-18 training steps at CIFAR-10 (32 px) and STL-10 (96 px) sizes, on synthetic uint8
images, through the trainer's own pieces (build_model, the two data paths, train_step, DirectPred, EMA, _measure).

Every ratio comes from ONE process, the variants timed in interleaved blocks (A B A B ...), medians of the blocks:
- device data path (dataset on the GPU, batched augmentation) vs the DataLoader path (per-image torchvision v2,
  ``--workers`` processes, pinned memory, persistent workers);
- the full product step (DirectPred every step + a live measurement every 50 steps) vs a plain BYOL step (SGD-trained
  linear predictor, no measurements): the overhead of the theory's measurements (target <= 2%);
- bf16 autocast vs fp32; optionally ``--compile``.
Epoch seconds = dataset size (CIFAR-10 50,000; STL-10 train+unlabeled 105,000) / images per second.

    python bench/bench_throughput.py [--device cuda] [--sizes cifar10,stl10] [--steps 40] [--workers 12] [--compile]
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

from ssltheory.practice.augment import TwoViews
from ssltheory.practice.config import TrainConfig
from ssltheory.practice.distributed import Dist
from ssltheory.practice.feed import DeviceFeed, LoaderFeed
from ssltheory.practice.optim import make_optimizer
from ssltheory.practice.target import ema_gamma, ema_update
from ssltheory.practice.train import _measure, build_model, train_step

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
                 workers: int, measure: bool, compile_: bool) -> None:
        size, batch, _ = SIZES[dataset]
        self.cfg = TrainConfig(dataset=dataset, predictor=predictor, precision=precision, data_path=path,
                               batch_size=batch, device=str(device), workers=workers, compile=compile_,
                               measure_every=50)
        self.device, self.measure = device, measure
        g = torch.Generator().manual_seed(0)
        imgs = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
        if path == "device":
            layout = imgs.permute(0, 2, 3, 1).numpy() if dataset == "cifar10" else imgs.numpy()
            self.feed = DeviceFeed(self.cfg, SimpleNamespace(data=layout), device, Dist())
        else:
            self.feed = LoaderFeed(self.cfg, UInt8Views(imgs, dataset, size), device, Dist())
        self.model = build_model(self.cfg, 3, device)
        self.opt = make_optimizer(self.cfg, self.model.online, self.model.predictor)
        probe = imgs[:512].float() / 255
        self.probe = TensorDataset(probe, torch.zeros(len(probe), dtype=torch.long))
        self.step, self.epoch, self.batches = 0, 0, iter(())

    def _next(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.epoch += 1
            self.batches = self.feed.epoch(self.epoch, 0)
            return next(self.batches)

    def block(self, n: int) -> float:
        sync(self.device)
        t = time.perf_counter()
        cl = self.device.type == "cuda"
        for _ in range(n):
            x1, x2 = self._next()
            if cl:
                x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
            loss, f1 = train_step(self.model, x1, x2, self.cfg)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.model.predictor.after_step(self.step, self.model.corr.F.to(self.device))
            ema_update(self.model.target, self.model.online, ema_gamma(self.cfg.ema, self.step, 10**6))
            self.step += 1
            if self.measure and self.step % self.cfg.measure_every == 0:
                _measure(self.model, self.probe, f1, self.cfg, self.device)
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
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to start)")
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
        mk = dict(device=device, n=a.images, workers=a.workers, compile_=False)
        variants = {
            "device bf16 plain": Runner(ds, "linear", "bf16", "device", measure=False, **mk),
            "device bf16 full": Runner(ds, "directpred", "bf16", "device", measure=True, **mk),
            "device fp32 full": Runner(ds, "directpred", "fp32", "device", measure=True, **mk),
            "loader bf16 full": Runner(ds, "directpred", "bf16", "loader", measure=True, **mk),
        }
        if a.compile:
            variants["device bf16 full compiled"] = Runner(ds, "directpred", "bf16", "device", measure=True,
                                                           **{**mk, "compile_": True})
        sec = interleaved(variants, a.steps, a.repeats, warmup=max(3, a.steps // 5))
        rows = {k: {"ms_per_step": 1e3 * v, "images_per_s": batch / v, "epoch_s": epoch_images / (batch / v)}
                for k, v in sec.items()}
        ratios = {"measurement overhead (full / plain - 1)": sec["device bf16 full"] / sec["device bf16 plain"] - 1,
                  "device path speed-up over loader": sec["loader bf16 full"] / sec["device bf16 full"],
                  "bf16 speed-up over fp32": sec["device fp32 full"] / sec["device bf16 full"]}
        if a.compile:
            ratios["compile speed-up"] = sec["device bf16 full"] / sec["device bf16 full compiled"]
        results["sizes"][ds] = {"image_px": size, "batch": batch, "epoch_images": epoch_images, "rows": rows,
                                "ratios": ratios}
        print(f"\n{ds}: ResNet-18 BYOL, {size} px, batch {batch}, epoch = {epoch_images:,} images")
        print(f"{'variant':28s} {'ms/step':>9s} {'images/s':>10s} {'epoch s':>8s}")
        for k, r in rows.items():
            print(f"{k:28s} {r['ms_per_step']:9.1f} {r['images_per_s']:10.0f} {r['epoch_s']:8.2f}")
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
