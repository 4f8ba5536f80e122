"""Predictors, one small class each: linear, mlp, symmetric, directpred, none (identity).

All map the projector output f (B, d) to a prediction (B, d). ``W_p()`` gives the linear predictor's matrix (None
for the MLP), so that the same measurements apply to all; ``after_step(step, F)`` is called after each optimizer
step with the running correlation F̂ (d, d) of the predictor's inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


class LinearPredictor(nn.Module):
    """W_p trained by gradient (the paper's 'regular W_p')."""

    trainable = True

    def __init__(self, d: int, bias: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(d, d, bias=bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.linear(f)

    def W_p(self) -> torch.Tensor | None:
        return self.linear.weight

    @torch.no_grad()
    def after_step(self, step: int, F: torch.Tensor) -> None:
        pass


class SymmetricPredictor(LinearPredictor):
    """Linear W_p made symmetric, (W_p + W_p^T) / 2, at the start and after every step (Table 3's 'sym')."""

    def __init__(self, d: int, bias: bool = False) -> None:
        super().__init__(d, bias)
        self.symmetrise()

    @torch.no_grad()
    def symmetrise(self) -> None:
        w = self.linear.weight
        w.copy_(0.5 * (w + w.T))

    @torch.no_grad()
    def after_step(self, step: int, F: torch.Tensor) -> None:
        self.symmetrise()


class DirectPredictor(LinearPredictor):
    """DirectPred: W_p = U diag(p) U^T from F̂ = U diag(s) U^T, p_j = max(sqrt(s_j / max s) + eps, 1e-4), or with
    ``inside`` p_j = sqrt(max(s_j / max s + eps, 1e-4)) (Table 7: eps = -c_j gives sqrt(max(s_j - c_j, 0))).

    Set at the end of every ``freq``-th step (the official code's order: the first forward uses the initial W_p).
    With freq > 1 W_p is trained by SGD in between (the paper's hybrid); with freq = 1 it is not trained.
    """

    def __init__(self, d: int, eps: float = 0.1, freq: int = 1, bias: bool = False, inside: bool = False) -> None:
        super().__init__(d, bias)
        self.eps, self.freq, self.inside = eps, freq, inside
        self.trainable = freq > 1

    @torch.no_grad()
    def after_step(self, step: int, F: torch.Tensor) -> None:
        if (step + 1) % self.freq == 0:
            W = directpred_weight(F, self.eps, inside=self.inside)
            self.linear.weight.copy_(W.to(self.linear.weight.dtype))


def directpred_weight(F: torch.Tensor, eps: float, floor: float = 1e-4, inside: bool = False) -> torch.Tensor:
    """U diag(p) U^T from the symmetrised F (float64): p_j = max(sqrt(s_j / max s) + eps, floor), or with ``inside``
    p_j = sqrt(max(s_j / max s + eps, floor))."""
    s, U = torch.linalg.eigh(0.5 * (F + F.T).double())
    s = s.clamp(min=0)
    smax = s.max()
    ratio = s / smax if smax > 0 else torch.zeros_like(s)
    p = (ratio + eps).clamp(min=floor).sqrt() if inside else (ratio.sqrt() + eps).clamp(min=floor)
    return (U * p) @ U.T


class MLPPredictor(nn.Module):
    """Two layers, Linear(d, h) -> BN(affine=False) -> ReLU -> Linear(h, d) (the paper's 2-layer predictor)."""

    trainable = True

    def __init__(self, d: int, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.BatchNorm1d(hidden, affine=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, d))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)

    def W_p(self) -> torch.Tensor | None:
        return None

    def after_step(self, step: int, F: torch.Tensor) -> None:
        pass


class IdentityPredictor(nn.Module):
    """No predictor, W_p = I (the collapse ablation of Theorem 2)."""

    trainable = False

    def __init__(self, d: int) -> None:
        super().__init__()
        self.register_buffer("eye", torch.eye(d))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def W_p(self) -> torch.Tensor | None:
        return self.eye

    def after_step(self, step: int, F: torch.Tensor) -> None:
        pass


def build_predictor(cfg: TrainConfig, d: int) -> nn.Module:
    """The predictor named by ``cfg.predictor`` for inputs of width ``d`` (W_p = scale * I with identity init)."""
    if cfg.predictor == "linear":
        pred = LinearPredictor(d, cfg.predictor_bias)
    elif cfg.predictor == "symmetric":
        pred = SymmetricPredictor(d, cfg.predictor_bias)
    elif cfg.predictor == "directpred":
        pred = DirectPredictor(d, cfg.eps, cfg.freq, cfg.predictor_bias, cfg.eps_inside)
    elif cfg.predictor == "mlp":
        return MLPPredictor(d, cfg.pred_hidden)
    else:
        return IdentityPredictor(d)
    if cfg.resolved_predictor_init == "identity":
        with torch.no_grad():
            pred.linear.weight.copy_(cfg.predictor_init_scale * torch.eye(d))
            if pred.linear.bias is not None:
                pred.linear.bias.zero_()
    return pred
