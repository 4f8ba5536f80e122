"""Multi-process training under ``torchrun`` (DDP): the process group, global batch norm and the collectives.

``torchrun --nproc-per-node N -m ssltheory.cli.main train ...`` (or the ``ssltheory`` script) sets RANK,
WORLD_SIZE and LOCAL_RANK; :func:`setup` then joins the group (NCCL on CUDA, gloo on CPU). ``--batch-size`` stays
the GLOBAL batch: every rank takes its contiguous slice of each global batch, so a run with the same global batch
computes the same losses and the same F̂ on any number of ranks, and can resume on another number of ranks.

Batch norm statistics are those of the global batch: ``torch.nn.SyncBatchNorm`` on CUDA, and on CPU (gloo, where
SyncBatchNorm refuses to run) :class:`GlobalBatchNorm`, which all-reduces the per-channel sums through
``torch.distributed.nn``'s differentiable all-reduce.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank in [0, world)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Only rank 0 logs, writes files and checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of n items (n divisible by world)."""
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def from_env() -> Dist:
    """The rank layout torchrun put in the environment (one process when it is absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group if launched with WORLD_SIZE > 1; returns the layout and this rank's device."""
    d = from_env()
    if not d.active:
        return d, device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return d, device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum of ``x`` over ranks (a new tensor; ``x`` itself on one process)."""
    if not d.active:
        return x
    y = x.clone()
    dist.all_reduce(y)
    return y


def all_gather_rows(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Rows of every rank's ``x`` (n_r, ...) in rank order; ranks may hold different n_r."""
    if not d.active:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(d.world)]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    pad = torch.zeros((m - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
    parts = [torch.empty((m, *x.shape[1:]), dtype=x.dtype, device=x.device) for _ in range(d.world)]
    dist.all_gather(parts, torch.cat([x, pad]))
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of all ranks (training); plain batch norm in eval or on one process.

    Per channel it all-reduces (sum x, sum x^2, count) with a differentiable all-reduce, so gradients flow through
    the global statistics exactly as in one process with the whole batch.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, *range(2, x.dim())]
        C = x.shape[1]
        count = torch.full((1,), x.numel() / C, dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        n = stats[-1]
        mean = stats[:C] / n
        var = (stats[C:2 * C] / n - mean * mean).clamp(min=0)
        if self.track_running_stats:
            with torch.no_grad():
                m = 0.1 if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
                self.num_batches_tracked += 1
        shape = (1, C) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def global_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every batch norm computing global-batch statistics (SyncBatchNorm on CUDA)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats).to(device)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            global_batchnorm(child, device)
    return module
