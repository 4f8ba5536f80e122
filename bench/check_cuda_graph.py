"""Does the CUDA-graph step follow the eager step's trajectory? Two BYOL ResNet-18 models from the same seed take the
same CIFAR-size batches (device data path, DirectPred, fp32 with deterministic cuDNN), one eager and one replayed from
a CUDA graph; prints the largest relative difference of the per-step losses, of F̂ and of the weights after the run,
and fails (exit 1) above ``--tol``. Needs CUDA.

    python bench/check_cuda_graph.py [--steps 30] [--precision fp32] [--tol 1e-3]
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.feed import DeviceFeed
from ssltheory.practice.data.schedule import make_schedule
from ssltheory.practice.engine.distributed import Dist
from ssltheory.practice.engine.optim import make_optimizer, make_scheduler
from ssltheory.practice.engine.step import build_model, optimizer_step


def run(graph: str, a, images) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    cfg = TrainConfig(dataset="cifar10", predictor=a.predictor, precision=a.precision, data_path="device",
                      batch_size=a.batch, device="cuda", cuda_graph=graph, lr_schedule="cosine", epochs=1)
    schedule = make_schedule(cfg, len(images))
    feed = DeviceFeed(cfg, SimpleNamespace(data=images), torch.device("cuda"), Dist(), schedule)
    model = build_model(cfg, 3, torch.device("cuda"))
    opt = make_optimizer(cfg, model.online, model.predictor)
    sched = make_scheduler(cfg, opt, schedule)
    losses = []
    for step, (x1, x2) in enumerate(feed.epoch(0, 0)):
        loss, *_ = optimizer_step(model, opt, sched, (x1, x2), cfg, step, a.steps)
        losses.append(float(loss.detach()))
    weights = torch.cat([p.detach().flatten().double() for p in model.online.parameters()])
    return losses, model.corr.F.double(), weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--predictor", default="directpred")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (a.steps * a.batch, 32, 32, 3), dtype=torch.uint8, generator=g).numpy()
    (l0, F0, w0), (l1, F1, w1) = run("off", a, images), run("on", a, images)
    dl = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(l0, l1, strict=True))
    dF = float((F0 - F1).norm() / F0.norm())
    dw = float((w0 - w1).norm() / w0.norm())
    print(f"{a.steps} steps, batch {a.batch}, {a.predictor}, {a.precision}: eager vs CUDA graph - losses max rel diff "
          f"{dl:.2e} (eager {l0[0]:.4f} -> {l0[-1]:.4f}, graph {l1[0]:.4f} -> {l1[-1]:.4f}), F̂ {dF:.2e}, weights "
          f"{dw:.2e}")
    sys.exit(0 if max(dl, dF, dw) <= a.tol else 1)


if __name__ == "__main__":
    main()
