"""Model assembly and one optimisation step, for any method of the registry (:mod:`..methods.registry`).

Per iteration, in the official DirectPred code's order (directpred.md §3):
1. online forward of both views to the projector outputs f1, f2 and the predictions p1, p2 (W_p in the graph, so
   gradients reach the online net through it);
2. the target branch makes z1, z2 (:mod:`..methods.target`: momentum encoder under no_grad, f detached, or f itself);
3. the objective (:mod:`..methods.objectives`), backward, one optimizer step (online and predictor groups), lr step;
4. F̂ and the predictor see the step's features (``observe``); the predictor hook (DirectPred sets W_p from F̂
   every ``freq`` steps; the symmetric predictor re-symmetrises); the target's update (the EMA).

On several ranks batch norm takes global-batch statistics and the step is wrapped in DDP; conv nets run
channels_last on CUDA and for inputs of 16 px or more on the CPU (``--channels-last``), ``--cuda-graph`` replays forward
and backward from one captured graph and ``--compile`` compiles the step and the target's forward.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ssltheory.practice.data.mixing import cutmix
from ssltheory.practice.engine.distributed import Dist, all_gather_rows, all_reduce_sum, global_batchnorm
from ssltheory.practice.measure.running import RunningCorrelation
from ssltheory.practice.methods.objectives import Views
from ssltheory.practice.methods.predictors import IdentityPredictor, Predictor, build_predictor
from ssltheory.practice.methods.registry import METHODS
from ssltheory.practice.methods.target import Targets
from ssltheory.practice.settings import Setting, declare, rule

if TYPE_CHECKING:
    from ssltheory.practice.config import TrainConfig
from ssltheory.practice.models import Encoder, backbone, projector
from ssltheory.theory.checks import ConfigError


class Siamese(nn.Module):
    """Both views through the online encoder and the predictor in one forward: (f1, f2, p1, p2), each (B, d), then
    the online outputs of any multi-crop local views (B, d) each.

    One module call per step is what DDP wraps and torch.compile traces."""

    def __init__(self, online: Encoder, predictor: nn.Module) -> None:
        super().__init__()
        self.online, self.predictor = online, predictor

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, *local: torch.Tensor):
        f1, f2 = self.online(x1), self.online(x2)
        return (f1, f2, self.predictor(f1), self.predictor(f2), *(self.online(x) for x in local))


@dataclass
class Model:
    """The pieces of a run (online encoder, predictor, target branches, objective, F̂) and how a step runs them."""

    online: Encoder
    predictor: Predictor
    target: Targets
    objective: nn.Module
    corr: RunningCorrelation
    forward: nn.Module | None = None  # Siamese(online, predictor), DDP-wrapped and/or compiled
    dist: Dist = field(default_factory=Dist)
    precision: str = "fp32"
    graph: Callable | None = None  # a CapturedStep (--cuda-graph), set up on the first step
    channels_last: bool = False  # the conv net and its inputs in channels-last memory format

    def __post_init__(self) -> None:
        if self.forward is None:  # (not `or`: a compiled module refuses bool())
            self.forward = Siamese(self.online, self.predictor)

    def modules(self) -> dict[str, nn.Module]:
        """Everything with state, by the name it has in a checkpoint."""
        mods = {"online": self.online, "predictor": self.predictor}
        if self.target.network is not None:
            mods["target"] = self.target.network
        if self.objective.state_dict():
            mods["objective"] = self.objective
        return mods

    def train_mode(self) -> None:
        """Every module with state in training mode (a measurement switches the online net to eval and back)."""
        for module in self.modules().values():
            module.train()

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks (x itself on one process)."""
        return all_reduce_sum(x, self.dist)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when there is a GPU, the CPU otherwise; a device this machine lacks is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(f"--device {name} is not available on this machine ({torch.cuda.device_count()} CUDA "
                          "devices): expected cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name} is not available on this machine: expected cpu or auto")
    return device


def build_model(cfg: TrainConfig, in_channels: int, device: torch.device, d: Dist | None = None) -> Model:
    """Online encoder, predictor, target branches, objective and F̂ of ``cfg``'s method, seeded by ``cfg.seed``."""
    d = d or Dist()
    method = METHODS[cfg.method]
    torch.manual_seed(cfg.seed)
    net = backbone(cfg.resolved_backbone, in_channels, cfg.resolved_image_size, cfg.proj_dim, cfg.width,
                   cfg.zero_init_residual)
    head = (nn.Identity() if cfg.resolved_backbone == "linear"
            else projector(net.dim, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers, cfg.projector))
    online = Encoder(net, head).to(device)
    predictor = (build_predictor(cfg, cfg.proj_dim, device.type) if method.predictor(cfg)
                 else IdentityPredictor(cfg.proj_dim)).to(device)
    if d.active:
        online, predictor = global_batchnorm(online, device), global_batchnorm(predictor, device)
    channels_last = cfg.resolved_channels_last(device.type)
    if channels_last:
        online = online.to(memory_format=torch.channels_last)
    target = Targets(cfg.resolved_positive_target, cfg.resolved_negative_target, online, cfg)
    forward: nn.Module = Siamese(online, predictor)
    if d.active:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(forward, device_ids=[device.index] if device.type == "cuda" else None,
                                          broadcast_buffers=False)
    if cfg.compile != "none":
        forward = torch.compile(forward, mode=cfg.compile)
        if target.network is not None:
            target.forward = torch.compile(target.forward, mode=cfg.compile)
    objective = method.objective(cfg).to(device)
    if hasattr(objective, "rank"):  # where this rank's rows sit in a gathered bank
        objective.rank = d.rank
    return Model(online, predictor, target, objective, RunningCorrelation(cfg.proj_dim, cfg.rho).to(device), forward, d,
                 cfg.resolved_precision(device.type), channels_last=channels_last)


def forward_views(model: Model, x1: torch.Tensor, x2: torch.Tensor, local: tuple[torch.Tensor, ...] = (),
                  mix: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, Views]:
    """Both branches on both views (B, C, H, W): (loss of this rank's batch, the step's :class:`Views`), features
    (B, d) in fp32. Under bf16 autocast the loss and everything measured stay fp32/fp64. ``autocast_cache`` is off
    inside a CUDA graph. ``local``: multi-crop local views (online branch only); ``mix``: CutMix's (mixed x1, mixed
    x2, perm, lam) (the online branch sees the mixed views, the targets the clean ones)."""
    with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=model.precision == "bf16",
                        cache_enabled=not (x1.is_cuda and torch.cuda.is_current_stream_capturing())):
        online_x = (x1, x2) if mix is None else mix[:2]
        f1, f2, p1, p2, *fl = model.forward(*online_x, *local)
        z1, z2, n1, n2 = model.target(x1, x2, f1, f2)
    same = n1 is z1  # the negatives are the positive targets (one branch)
    f1, f2, p1, p2, z1, z2 = (t.float() for t in (f1, f2, p1, p2, z1, z2))
    n1, n2 = (z1, z2) if same else (_float(n1), _float(n2))
    views = Views(p1, p2, f1, f2, z1, z2, n1, n2, [t.float() for t in fl], None if mix is None else mix[2:],
                  model.reduce, lambda t: all_gather_rows(t, model.dist), model.dist.world)
    return model.objective(views), views


def _float(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


def forward_loss(model: Model, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """:func:`forward_views` as tensors (what a CUDA graph captures): (loss, f1, f2, p1, p2, z1, z2[, n1, n2])."""
    loss, v = forward_views(model, x1, x2)
    negs = () if v.n1 is None or v.n1 is v.z1 else (v.n1, v.n2)
    return (loss, v.f1, v.f2, v.p1, v.p2, v.z1, v.z2, *negs)


def _views(model: Model, out: tuple[torch.Tensor, ...]) -> Views:
    """The :class:`Views` of :func:`forward_loss`'s tensors (a replayed graph's outputs)."""
    _, f1, f2, p1, p2, z1, z2, *negs = out
    n1, n2 = negs if negs else ((z1, z2) if model.target.negative is not None else (None, None))
    return Views(p1, p2, f1, f2, z1, z2, n1, n2, reduce=model.reduce, world=model.dist.world)


def observe(model: Model, f1: torch.Tensor, f2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> None:
    """Fold a step's features into F̂ and show them to the predictor, over the global batch."""
    reduce = model.reduce if model.dist.active else None
    model.corr.update(torch.cat([f1, f2]), reduce=reduce)
    model.predictor.observe(f1.detach(), f2.detach(), z1.detach(), z2.detach(), reduce)


def optimizer_step(model: Model, opt, sched, batch: tuple[torch.Tensor, ...], cfg: TrainConfig, step: int,
                   total: int, prefetch: Callable[[], None] | None = None) -> tuple[torch.Tensor, Views]:
    """One training iteration on the feed's ``batch`` (x1, x2, *local views), each (B, C, H, W), at 0-based ``step``
    of ``total``: CutMix if asked, forward, backward, optimizer and lr steps, the predictor hook, the targets'
    update; returns (loss of this rank's batch, the step's :class:`Views`).

    ``prefetch`` (the feed's) is called once the step's device work is queued and before the predictor hook, the
    one part that may wait for the device (DirectPred's eigendecomposition checks its result on the host): the host
    makes the next batch while the device is busy, so that it has the next step to queue as soon as the wait ends.
    """
    x1, x2, *local = batch
    if model.channels_last and x1.dim() == 4:
        x1, x2, *local = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2, *local))
    if model.graph is None and x1.is_cuda and cfg.resolved_cuda_graph("cuda", model.dist.world):
        from ssltheory.practice.engine.graphed import CapturedStep

        opt.zero_grad(set_to_none=True)
        model.graph = CapturedStep(lambda a, b: forward_loss(model, a, b), model.modules().values(), x1, x2)
    if model.graph is not None:  # forward and backward replayed from one CUDA graph; grads land in place
        out = model.graph(x1, x2)
        loss, views = out[0], _views(model, out)
    else:
        if cfg.compile in ("reduce-overhead", "max-autotune"):  # CUDA graphs: a new step may reuse their outputs
            torch.compiler.cudagraph_mark_step_begin()
        mix = None
        if cfg.cutmix > 0:  # one draw per step, seeded by the step: a resumed run mixes the same way
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            both, perm, lam = cutmix(torch.cat([x1, x2], dim=1), cfg.cutmix, g)  # one box and pairing for both
            mix = (*both.split(x1.shape[1], dim=1), perm, lam)
        loss, views = forward_views(model, x1, x2, tuple(local), mix)
    observe(model, views.f1, views.f2, views.z1, views.z2)
    if model.graph is None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    if prefetch is not None:
        prefetch()
    model.predictor.after_step(step, model.corr.F.to(x1.device))
    model.target.after_step(model.online, step, total)
    return loss, views


def training_state(model: Model, opt, sched, feed) -> dict:
    """What a checkpoint holds of the model, the optimizer, the lr schedule and the feed."""
    return {"modules": {k: m.state_dict() for k, m in model.modules().items()}, "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "corr": model.corr.state_dict(), "feed": feed.state_dict()}


def restore(state: dict, model: Model, opt, sched, feed) -> None:
    """The inverse of :func:`training_state`."""
    for name, module in model.modules().items():
        module.load_state_dict(state["modules"][name])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    for group, base, factor in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
        group["lr"] = base * factor(sched.last_epoch)  # this config's lr (a stream changed on resume: unfrozen)
    model.corr.load_state_dict(state["corr"])
    feed.load_state_dict(state.get("feed", {}))


def check_device(name: str, flag: str = "--device") -> str:
    """``name`` if it names a kind of device (auto, cpu, cuda, cuda:N, mps), else a one-line error."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ConfigError(f"{flag} {name!r} is not known: expected auto, cpu, cuda, cuda:N or mps")
    return name


def _channels_last(cfg: Any, device_type: str, world: int = 1) -> bool:
    if cfg.channels_last != "auto":
        return cfg.channels_last == "on" and cfg.resolved_backbone != "linear"
    return cfg.resolved_backbone != "linear" and (device_type == "cuda" or cfg.resolved_image_size >= 16)


declare(
    Setting("device", "auto", "cpu | cuda | cuda:N [auto: cuda when available]", "Speed", str),
    Setting("precision", "auto", "fp32 | bf16 (autocast; F̂, eigendecompositions and metrics stay fp32) [auto: bf16 on "
            "CUDA]", "Speed", str, choices=("auto", "fp32", "bf16"), device=True,
            resolve=lambda cfg, device_type, world=1: cfg.precision if cfg.precision != "auto" else
            "bf16" if device_type == "cuda" else "fp32"),
    Setting("channels_last", "auto", "conv nets and their inputs in channels-last memory format: on | off [auto: on "
            "CUDA, and on the CPU for inputs of 16 px or more: 1.5x faster forward + backward for the 28 px convnet on "
            "2 cores (bench/bench_fmnist_step.py); not for 8 px digits, whose recorded numbers it would move]", "Speed",
            str, choices=("auto", "on", "off"), device=True, resolve=_channels_last),
    Setting("compile", "none", "torch.compile the step and the target's forward: none | default | reduce-overhead "
            "(CUDA graphs) | max-autotune", "Speed", str, choices=("none", "default", "reduce-overhead",
                                                                    "max-autotune")),
)


@rule
def _check_device(cfg: Any) -> None:
    check_device(cfg.device)
