"""Cost of the UniGrad family's forms and of their measurements, per optimizer step, in one run.

1. Each method's gradient form (and the unified form, where it has one) against its loss form: seconds per
   ``optimizer_step`` of the trainer's own pieces (build_model, make_optimizer, optimizer_step), printed as the ratio
   form / loss per method. Every variant takes its positive targets and negatives from the momentum encoder
   (``--positive-target ema``, ``--negative-target ema``; a gradient form refuses an online target), so that the
   two forms of a method differ in their objective only - except BYOL, whose loss form is the regression through a
   learned linear predictor and whose gradient form is DirectPred's gradient with no learned predictor (Table 2 (c)
   vs (d)). MoCo's queue holds ``--queue`` keys.
2. What the measurements cost: ``objective.measure(views.detached())`` of each variant (on the views of its last
   step, the objective as it stands then) and the generic ones of :mod:`ssltheory.practice.measure.quantities` that
   every record computes (``negative_cosine(f1)``, ``decorrelation(f1)``, ``method_metrics(measured)``, the last one an
   eigvalsh of the method's d x d F), each as a ratio to one optimizer step of the same variant. On CUDA they are timed
   twice: on the device, and as the live record computes them (host copies, a CPU copy of the objective, one core:
   :func:`ssltheory.practice.measure.live.one_thread`; the record runs in a background thread there, off the step's
   critical path).

All variants are built up front and timed round-robin: each round runs one block of ``--steps`` optimizer steps of
every variant in turn, each block followed by ``--calls`` calls of each of that variant's measurements; ``--repeats``
rounds. A variant's time is the median over its blocks, and a ratio is the median over rounds of the ratio of the two
blocks of that round (run one after the other: under a second apart on the CPU), with the quartiles of those ratios:
a slow spell of a shared machine falls on both sides of a ratio, and the median drops the blocks it hit. On the CPU a
block is one step by default (on a loaded 2-core box, 60 finely interleaved single-step samples gave far steadier
medians than 5 blocks of 10 steps); on CUDA 10 steps, whose launches overlap, and 10 rounds. On the CPU torch runs
one intra-op thread (``--threads``).
Inputs are random N(0, 1) batches (two views, fixed for the run); the model is the UniGrad 3-layer projector
(``projector="unigrad"``, ``proj_layers=3``) on the convnet backbone (8 px) or ResNet-18; the CUDA graph is off for
every variant (the trainer would graph BYOL's loss form only, which has no negatives).

    python bench/bench_methods.py                       # digits size: 1x8x8, batch 64, convnet, 256-256-256, CPU
    python bench/bench_methods.py --device cuda --size 32 --batch 256 --proj-dim 2048 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.optim import make_optimizer
from ssltheory.practice.engine.step import build_model, optimizer_step
from ssltheory.practice.measure.live import one_thread
from ssltheory.practice.measure.quantities import decorrelation, method_metrics, negative_cosine
from ssltheory.practice.methods.objectives import Views
from ssltheory.practice.methods.registry import METHODS

FORMS = {"moco": ("loss", "gradient"), "simclr": ("loss", "gradient"), "byol": ("loss", "gradient"),
         "barlowtwins": ("loss", "gradient", "unified"), "vicreg": ("loss", "gradient", "unified"),
         "unigrad": ("loss", "gradient")}
"""The variants timed: every form of each method, its loss form first (the denominator of its ratios)."""

MEASURES = ("measure", "negative_cosine", "decorrelation", "method_metrics")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_views(v: Views) -> Views:
    """CPU copies of detached views (what the live record reads)."""
    def cpu(t):
        return None if t is None else t.detach().cpu()
    return Views(*(cpu(getattr(v, n)) for n in ("p1", "p2", "f1", "f2", "z1", "z2", "n1", "n2")))


@dataclass
class Variant:
    """One method in one form: its model, optimizer and step counter; ``block`` and ``measure`` time it."""

    method: str
    form: str
    cfg: TrainConfig
    device: torch.device
    model: object = None
    opt: object = None
    step: int = 0
    views: Views | None = None
    step_s: list[float] = field(default_factory=list)
    measure_s: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        channels = 1 if self.cfg.dataset == "digits" else 3
        self.model = build_model(self.cfg, channels, self.device)
        self.opt = make_optimizer(self.cfg, self.model.online, self.model.predictor)

    @property
    def name(self) -> str:
        return f"{self.method} {self.form}"

    def block(self, n: int, x: tuple[torch.Tensor, torch.Tensor], record: bool = True) -> float:
        """Seconds per step over n optimizer steps (the loss checked for NaN once, after the block)."""
        sync(self.device)
        t = time.perf_counter()
        for _ in range(n):
            loss, self.views = optimizer_step(self.model, self.opt, None, x, self.cfg, self.step, 10**6)
            self.step += 1
        sync(self.device)
        sec = (time.perf_counter() - t) / n
        if not bool(torch.isfinite(loss.detach())):
            raise RuntimeError(f"{self.name}: loss is not finite at step {self.step}")
        if record:
            self.step_s.append(sec)
        return sec

    def measure(self, calls: int, where: tuple[str, ...]) -> None:
        """Seconds per call of each measurement, on the views of the last step; ``where``: ``device`` (the views
        and objective where they are) and/or ``host`` (CPU copies on one core, as the CUDA run's record)."""
        for place in where:
            if place == "device":
                objective, views, ctx = self.model.objective, self.views.detached(), None
            else:
                objective, views, ctx = copy.deepcopy(self.model.objective).cpu(), host_views(self.views), one_thread()
            measured = objective.measure(views)  # (once untimed: what method_metrics reads)
            fns: dict[str, Callable[[], object]] = {
                "measure": lambda o=objective, v=views: o.measure(v),
                "negative_cosine": lambda v=views: negative_cosine(v.f1),
                "decorrelation": lambda v=views: decorrelation(v.f1),
                "method_metrics": lambda m=measured: method_metrics(m)}
            if ctx is not None:
                ctx.__enter__()
            try:
                for key, fn in fns.items():
                    sync(self.device)
                    t = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    sync(self.device)
                    self.measure_s.setdefault(f"{key} ({place})", []).append((time.perf_counter() - t) / calls)
            finally:
                if ctx is not None:
                    ctx.__exit__(None, None, None)


def make_config(method: str, form: str, a: argparse.Namespace) -> TrainConfig:
    digits = a.size == 8 and a.backbone in ("auto", "convnet")
    negatives = METHODS[method].negatives(TrainConfig(method=method, form=form, positive_target="ema"))
    return TrainConfig(dataset="digits" if digits else "cifar10", image_size=0 if digits else a.size,
                       backbone=a.backbone, method=method, form=form, positive_target="ema",
                       negative_target="ema" if negatives else "auto", projector="unigrad", proj_layers=3,
                       proj_hidden=a.proj_hidden or a.proj_dim, proj_dim=a.proj_dim, batch_size=a.batch,
                       queue_size=a.queue, device=a.device, cuda_graph="off", precision=a.precision, seed=a.seed)


def ratio(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """(median, first quartile, third quartile) over rounds of num[r] / den[r]."""
    r = [n / d for n, d in zip(num, den, strict=True)]
    if len(r) < 2:
        return r[0], r[0], r[0]
    q1, _, q3 = statistics.quantiles(r, n=4)
    return statistics.median(r), q1, q3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=8, help="image side in px (8: digits, 1 channel, convnet)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--proj-dim", type=int, default=256, help="projector output width d")
    ap.add_argument("--proj-hidden", type=int, default=0, help="projector hidden width [0: --proj-dim]")
    ap.add_argument("--backbone", default="auto", help="auto: convnet at 8 px, resnet18 otherwise")
    ap.add_argument("--queue", type=int, default=4096, help="moco: keys in the queue")
    ap.add_argument("--precision", default="auto", help="auto: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--methods", default=",".join(FORMS), help="comma-separated subset of " + ",".join(FORMS))
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per timed block [default: 1 on CPU, "
                                                            "every step a sample; 10 on CUDA, whose steps overlap]")
    ap.add_argument("--repeats", type=int, default=None, help="rounds over all variants [default: 60 on CPU, 10 on "
                                                              "CUDA]")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before the first round")
    ap.add_argument("--calls", type=int, default=1, help="calls of each measurement per round")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads [default: 1 on CPU (two "
                                                               "threads on a shared 2-core box thrash), torch's on "
                                                               "CUDA]")
    ap.add_argument("--json", default="", help="also write the numbers here")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    cpu = device.type == "cpu"
    a.steps = a.steps if a.steps is not None else (1 if cpu else 10)
    a.repeats = a.repeats if a.repeats is not None else (60 if cpu else 10)
    threads = a.threads if a.threads is not None else (1 if cpu else 0)
    if threads > 0:
        torch.set_num_threads(threads)
    where = ("device", "host") if device.type == "cuda" else ("device",)
    methods = [m for m in a.methods.split(",") if m]
    variants = [Variant(m, f, make_config(m, f, a), device) for m in methods for f in FORMS[m]]
    cfg0 = variants[0].cfg
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {cfg0.resolved_backbone}, {cfg0.resolved_image_size} px, "
          f"batch {a.batch}, projector unigrad 3 layers {cfg0.proj_hidden}-{cfg0.proj_hidden}-{cfg0.proj_dim}, "
          f"precision {cfg0.resolved_precision(device.type)}, moco queue {a.queue}; {a.repeats} rounds x "
          f"{a.steps} steps")
    g = torch.Generator().manual_seed(a.seed)
    chans = 1 if cfg0.dataset == "digits" else 3
    x = tuple(torch.randn(a.batch, chans, a.size, a.size, generator=g).to(device) for _ in range(2))
    if device.type == "cuda":
        x = tuple(t.contiguous(memory_format=torch.channels_last) for t in x)
    t0 = time.perf_counter()
    for v in variants:
        v.block(a.warmup, x, record=False)
        v.measure(1, where)
        v.measure_s.clear()
    for _ in range(a.repeats):
        for v in variants:
            v.block(a.steps, x)
            v.measure(a.calls, where)
    wall = time.perf_counter() - t0

    rows: dict[str, dict] = {}
    for v in variants:
        loss = next(u for u in variants if u.method == v.method and u.form == "loss")
        step = statistics.median(v.step_s)
        row = {"method": v.method, "form": v.form, "ms_per_step": 1e3 * step,
               "ms_per_step_blocks": [1e3 * s for s in v.step_s]}
        med, lo, hi = ratio(v.step_s, loss.step_s)
        row["over_loss"] = {"median": med, "q1": lo, "q3": hi}
        row["measure_ms"] = {k: 1e3 * statistics.median(s) for k, s in v.measure_s.items()}
        row["measure_over_step"] = {k: ratio(s, v.step_s)[0] for k, s in v.measure_s.items()}
        for place in where:  # everything a record computes of these, per round, over that round's step
            per_round = [sum(s[r] for k, s in v.measure_s.items() if k.endswith(f"({place})"))
                         for r in range(a.repeats)]
            row["measure_ms"][f"all ({place})"] = 1e3 * statistics.median(per_round)
            row["measure_over_step"][f"all ({place})"] = ratio(per_round, v.step_s)[0]
        rows[v.name] = row

    print(f"\n1. ms per optimizer step (median of {a.repeats} blocks) and form / loss of the same method (median of "
          "the rounds' ratios, [quartiles])")
    print(f"{'variant':22s} {'ms/step':>8s} {'/ loss':>7s}  {'range':>13s}")
    for k, r in rows.items():
        o = r["over_loss"]
        rng = "" if r["form"] == "loss" else f"[{o['q1']:.2f}, {o['q3']:.2f}]"
        print(f"{k:22s} {r['ms_per_step']:8.2f} {o['median']:7.3f}  {rng:>13s}")

    print(f"\n2. measurements: ms per call (median of {a.repeats} x {a.calls} calls) and as a share of the variant's "
          "optimizer step")
    keys = list(next(iter(rows.values()))["measure_ms"])
    print(f"{'variant':22s} " + " ".join(f"{k:>26s}" for k in keys))
    for k, r in rows.items():
        cells = [f"{r['measure_ms'][m]:7.2f} ms {100 * r['measure_over_step'][m]:6.1f}%" for m in keys]
        print(f"{k:22s} " + " ".join(f"{c:>26s}" for c in cells))
    every = TrainConfig().measure_every
    worst = max(rows, key=lambda k: max(rows[k]["measure_over_step"][f"all ({p})"] for p in where))
    share = max(rows[worst]["measure_over_step"][f"all ({p})"] for p in where)
    print(f"at the trainer's rate (one record per {every} steps) the costliest, {worst}, is {100 * share / every:.2f}% "
          "of its steps")
    print(f"\nwall {wall:.1f} s for the timed part")

    if a.json:
        out = {"device": name, "torch": torch.__version__, "backbone": cfg0.resolved_backbone,
               "image_px": cfg0.resolved_image_size, "batch": a.batch, "proj_hidden": cfg0.proj_hidden,
               "proj_dim": cfg0.proj_dim, "projector": "unigrad, 3 layers", "queue": a.queue,
               "precision": cfg0.resolved_precision(device.type), "steps": a.steps, "repeats": a.repeats,
               "calls": a.calls, "targets": "positive ema, negative ema", "wall_s": wall, "rows": rows}
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
