"""The running correlation: one exponential moving average of a batch's second moment, for every F the code keeps.

    F <- C_0 at the first batch, then F <- rho F + (1 - rho) C_t,    C_t = a_t^T b_t / N_t    (d, d)

(not centred; the official DirectPred code's estimator, Eq. 19). Three things keep one:

- F̂, the correlation of the predictor's inputs (both views' detached projector outputs, a = b = [f1; f2]): what
  DirectPred reads and every measurement of W_p is taken along (float64; ``--rho``);
- UniGrad's F of the negatives (``practice/methods/objectives/asymmetric.py``: l2-normalised rows, float32;
  ``--f-rho``);
- the optimal predictor's cross-correlation C_af = E[f_a f^T] of the targets with the inputs (float64).

:class:`RunningCorrelation` holds F and whether it has seen a batch as buffers (checkpointed with the module), keeps
its dtype whatever the module is cast to, updates in place (a replayed CUDA graph would follow it) and never reads a
value on the host, so nothing waits for the device. ``reduce`` sums over the ranks of a DDP run: the sums and the
count are reduced together, so F is the global batch's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class RunningCorrelation(nn.Module):
    """F (d, d) in ``dtype``, the moving average at rate ``rho`` in [0, 1) of the batches' second moments."""

    def __init__(self, d: int, rho: float, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must lie in [0, 1), got {rho}")
        self.rho, self.dtype = float(rho), dtype
        self.register_buffer("F", torch.zeros(d, d, dtype=dtype))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> RunningCorrelation:
        """Move like any module, but keep F in its own dtype whatever the module is cast to (``.half()``)."""
        super()._apply(fn, recurse)
        self.F = self.F.to(self.dtype)
        return self

    @torch.no_grad()
    def fold(self, C: torch.Tensor) -> torch.Tensor:
        """Fold in one batch's moment C (d, d), already over the global batch; returns F (the buffer itself)."""
        C = C.to(device=self.F.device, dtype=self.dtype)
        self.F.copy_(torch.where(self.initialised, self.rho * self.F + (1.0 - self.rho) * C, C))
        self.initialised.fill_(True)
        return self.F

    @torch.no_grad()
    def update(self, a: torch.Tensor, b: torch.Tensor | None = None,
               reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Fold in C = a^T b / N for rows a, b (N, d) (b = a by default); ``reduce`` sums over ranks. Returns F."""
        a = a.detach().to(self.dtype)
        b = a if b is None else b.detach().to(self.dtype)
        d = a.shape[1]
        S = torch.cat([(a.T @ b).reshape(-1), a.new_full((1,), float(a.shape[0]))])  # no host-to-device copy
        if reduce is not None:
            S = reduce(S)
        return self.fold(S[:-1].view(d, d) / S[-1])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints from before this class kept F̂ as ``{F, count, rho}``: ``count`` > 0 is ``initialised``."""
        if prefix + "count" in state_dict and prefix + "initialised" not in state_dict:
            count = state_dict.pop(prefix + "count")
            state_dict.pop(prefix + "rho", None)
            state_dict[prefix + "initialised"] = torch.tensor(int(count) > 0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
