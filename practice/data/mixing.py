"""UniGrad's data strategies (Tao et al. 2022, Table 4): CutMix of a batch and the multi-crop setting.

- :func:`cutmix`: one box per batch, its region of image i replaced by the same region of image perm(i); the
  mixing ratio lam0 ~ Beta(alpha, alpha) sets the box's area (1 - lam0) H W, and ``lam`` is the fraction of each
  image's own pixels that the box, clipped to the image, leaves in place.
- :func:`parse_multi_crop`: ``--multi-crop NxSIZE`` (N local views of SIZE px besides the two global ones); the
  crop scales are SwAV's / DINO's, as the UniGrad paper describes them (:data:`GLOBAL_SCALE`, :data:`LOCAL_SCALE`).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch

from ssltheory.practice.data.registry import DATASETS
from ssltheory.practice.methods.registry import METHODS
from ssltheory.practice.settings import Setting, declare, rule
from ssltheory.theory.checks import ConfigError

GLOBAL_SCALE = (0.14, 1.0)
"""RandomResizedCrop area range of the two global views when multi-crop is on."""
LOCAL_SCALE = (0.05, 0.14)
"""RandomResizedCrop area range of the local views."""
MAX_LOCAL_VIEWS = 32
MAX_LOCAL_SIZE = 4096


def beta_sample(alpha: float, generator: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha), reproducible from ``generator`` (a CPU generator: one 63-bit integer is
    drawn from it and seeds numpy's Beta sampler, so the torch generator's state decides the draw)."""
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def cutmix_box(height: int, width: int, lam0: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    """A box (top, bottom, left, right), half-open, of area about (1 - lam0) H W (sides sqrt(1 - lam0) H and
    sqrt(1 - lam0) W, rounded) around a uniform random centre pixel, clipped to the image."""
    side = math.sqrt(max(0.0, 1.0 - lam0))
    h, w = int(round(side * height)), int(round(side * width))
    cy = int(torch.randint(0, height, (1,), generator=generator))
    cx = int(torch.randint(0, width, (1,), generator=generator))
    top, left = cy - h // 2, cx - w // 2
    return max(top, 0), min(top + h, height), max(left, 0), min(left + w, width)


def cutmix(x: torch.Tensor, alpha: float, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CutMix of a batch: (x_mixed, perm, lam).

    x: (B, C, H, W) on any device; alpha > 0: the Beta(alpha, alpha) of the mixing ratio; generator: a CPU
    generator, the only source of randomness (the same state gives the same mix on any device).

    Returns x_mixed (B, C, H, W), a new tensor: x with one box (the same for every row) of row i replaced by the
    same box of row perm[i]; perm (B,) int64 on x's device, a uniform random permutation; lam (B,) float32 on x's
    device, the fraction of row i's own pixels kept (1 - box area / (H W) after clipping; equal for all rows). A row
    with perm[i] == i is its own mix: its pixels do not change, and lam still reports the box's complement.
    """
    if alpha <= 0:
        raise ValueError(f"cutmix needs alpha > 0, got {alpha}")
    B, _, H, W = x.shape
    lam0 = beta_sample(alpha, generator)
    top, bottom, left, right = cutmix_box(H, W, lam0, generator)
    perm_cpu = torch.randperm(B, generator=generator)
    perm = perm_cpu.to(x.device)
    out = x.clone()
    out[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    kept = 1.0 - (bottom - top) * (right - left) / (H * W)
    lam = torch.full((B,), kept, dtype=torch.float32, device=x.device)
    return out, perm, lam


_SPEC = re.compile(r"(\d+)x(\d+)")


def parse_multi_crop(spec: str) -> tuple[int, int]:
    """``--multi-crop`` as (N local views, SIZE px): "6x96" -> (6, 96), "" -> (0, 0) (off); N in 1..32, SIZE in
    1..4096. Anything else raises ConfigError (one line naming the value and the accepted form)."""
    if spec == "":
        return 0, 0
    m = _SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if m is None:
        raise ConfigError(f"--multi-crop {spec!r} does not parse: expected NxSIZE, e.g. 6x96 (N local crops of SIZE "
                          "px), or '' for none")
    n, size = int(m.group(1)), int(m.group(2))
    if not 1 <= n <= MAX_LOCAL_VIEWS or not 1 <= size <= MAX_LOCAL_SIZE:
        raise ConfigError(f"--multi-crop {spec!r} is out of range: expected NxSIZE with N from 1 to "
                          f"{MAX_LOCAL_VIEWS} local crops and SIZE from 1 to {MAX_LOCAL_SIZE} px, or '' for none")
    return n, size


declare(
    Setting("cutmix", 0.0, "CutMix on the online views, Beta(α, α) mixing ratio [0: off; unigrad only]", "Method",
            float, low=0.0, high=100.0),
    Setting("multi_crop", "", "local crops NxSIZE besides the two global views, e.g. 6x96 (global scale (0.14, 1), "
            "local (0.05, 0.14)) ['': off; unigrad only]", "Method", str),
)


def graph_safe(cfg: Any) -> bool:
    """Whether a step with these data strategies may be captured as a CUDA graph: no (CutMix draws a new box and
    pairing every step; multi-crop adds views whose shapes the graph would have to capture too)."""
    return not (cfg.cutmix > 0 or cfg.multi_crop)


@rule
def _check_mixing(cfg: Any) -> None:
    """CutMix and multi-crop: a valid spec, an image dataset, an objective that supports them, and (CutMix) targets
    and negatives from a momentum encoder, the only branch that sees the clean images."""
    parse_multi_crop(cfg.multi_crop)
    if not (cfg.cutmix or cfg.multi_crop):
        return
    if DATASETS[cfg.dataset].linear:
        raise ConfigError(f"--cutmix / --multi-crop with DATASET {cfg.dataset} is not accepted: they cut images; "
                          f"expected an image dataset ({', '.join(d for d, s in DATASETS.items() if not s.linear)})")
    objective = METHODS[cfg.method].objective(cfg)
    for flag, value, can in (("--cutmix", cfg.cutmix, objective.cutmix),
                             ("--multi-crop", cfg.multi_crop, objective.multi_crop)):
        if value and not can:
            able = [m for m in ("unigrad",) if m in METHODS]
            raise ConfigError(f"{flag} {value} with --method {cfg.method} (--form {cfg.resolved_form}) is not "
                              f"accepted: its objective does not support it; expected --method {' or '.join(able)}")
    targets = (cfg.resolved_positive_target, cfg.resolved_negative_target)
    if cfg.cutmix and targets != ("ema", "ema"):
        raise ConfigError(f"--cutmix with --positive-target {targets[0]} --negative-target {targets[1]} is not "
                          "accepted: the online views are mixed, so only a momentum encoder sees the clean images "
                          "that the targets and F come from; expected ema for both")
