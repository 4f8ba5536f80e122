"""A training step's forward and backward captured once as a CUDA graph and replayed (``--cuda-graph``).

A BYOL ResNet-18 step at CIFAR size is ~1,500 kernel launches whose host-side cost (~40 ms on an H100 host) exceeds
the device's work (~29 ms); replaying a graph costs one launch. Only the forward of both branches, the loss and the
backward are captured; the optimizer (whose learning rate changes), F̂, DirectPred, the EMA and the measurements run
eagerly around it, reading and writing the same parameter, gradient and buffer tensors.

Capture follows torch.cuda.graphs' whole-network recipe: a few warm-up iterations on a side stream (cuDNN picks its
algorithms), gradients set to None so that the captured backward owns them, then capture. The warm-up forwards would
move batch norm's running statistics, so every buffer is saved before and put back after: a run with the graph
follows the same trajectory as one without (to the nondeterminism of the device's kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ssltheory.practice.data import mixing
from ssltheory.practice.methods.registry import METHODS
from ssltheory.practice.settings import Setting, declare, rule
from ssltheory.theory.checks import ConfigError


class CapturedStep:
    """``fn(x1, x2) -> tensors`` (forward + loss, loss first) and ``loss.backward()``, captured on the views' shapes.

    Calling it copies the views into the static inputs, replays, and returns the static outputs: valid until the next
    call (clone what must outlive the step). Gradients of ``modules``' parameters are written in place."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]],
                 modules: Iterable[nn.Module], x1: torch.Tensor, x2: torch.Tensor, warmup: int = 3) -> None:
        self.fn = fn
        mods = list(modules)
        self.params = [p for m in mods for p in m.parameters() if p.requires_grad]
        buffers = [b for m in mods for b in m.buffers()]
        saved = [b.clone() for b in buffers]
        self.x1, self.x2 = x1.clone(), x2.clone()
        side = torch.cuda.Stream(x1.device)
        side.wait_stream(torch.cuda.current_stream(x1.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._clear_grads()
                self._run()
        torch.cuda.current_stream(x1.device).wait_stream(side)
        self._clear_grads()
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (the DataLoader's pinning thread, the measurement worker) may call CUDA meanwhile
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out = self._run()
        with torch.no_grad():
            for b, s in zip(buffers, saved, strict=True):
                b.copy_(s)

    def _clear_grads(self) -> None:
        for p in self.params:
            p.grad = None

    def _run(self) -> tuple[torch.Tensor, ...]:
        out = self.fn(self.x1, self.x2)
        out[0].backward()
        return tuple(t.detach() for t in out)

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.x1.copy_(x1)
        self.x2.copy_(x2)
        self.graph.replay()
        return self.out


def _capture(cfg: Any, device_type: str, world: int = 1) -> bool:
    """Whether the step is replayed from a CUDA graph: ``auto`` (or ``on``) on CUDA, one process, no --compile, and a
    step that is safe to capture: the method's objective says so (:meth:`.Method.graph_safe`) and no data strategy
    changes the step's shapes or draws (:func:`~..data.mixing.graph_safe`)."""
    return not (cfg.cuda_graph == "off" or device_type != "cuda" or world > 1 or cfg.compile != "none"
                or not _safe(cfg))


def _safe(cfg: Any) -> bool:
    return METHODS[cfg.method].graph_safe(cfg) and mixing.graph_safe(cfg)


declare(
    Setting("cuda_graph", "auto", "auto | on | off: replay forward + backward from one CUDA graph (auto: on CUDA with "
            "one process, no --compile, and a step its objective says is safe to capture)", "Speed", str,
            choices=("auto", "on", "off"), resolve=_capture, device=True),
)


@rule
def _check_cuda_graph(cfg: Any) -> None:
    if cfg.cuda_graph == "on" and not _safe(cfg):
        raise ConfigError(f"--cuda-graph on with --method {cfg.method} (--form {cfg.resolved_form}) or CutMix / "
                          "multi-crop is not accepted: the step keeps state or changes shape between steps; expected "
                          "--cuda-graph auto or off")
    if cfg.cuda_graph == "on" and cfg.compile != "none":
        raise ConfigError(f"--cuda-graph on with --compile {cfg.compile} is not accepted: expected one of them "
                          "(--compile reduce-overhead makes its own CUDA graphs)")
