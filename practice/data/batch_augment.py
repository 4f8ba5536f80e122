"""The paper's augmentations applied to a whole batch at once, on any device (the fast GPU data path).

The distributions are those of :mod:`.augment`'s torchvision pipelines, read from the same :class:`AugSpec`:
:func:`sample_params` draws every random number of a view for ``n`` images (torchvision's algorithms, vectorised,
on a CPU generator so that CPU and GPU runs, and every rank of a DDP run, draw the same numbers), and
:func:`apply_view` applies them to a (B, C, H, W) batch in float32 on the batch's device:

- random resized crop: torchvision's 10 tries of (scale, log-ratio) then the central-crop fallback; resampled with
  ``torchvision.ops.roi_align`` (bilinear; when shrinking it averages ceil(crop/size) samples per output pixel, a
  box-filter antialias, where the CPU pipeline uses an antialiased bilinear or bicubic resize);
- rotation (digits): uniform angle, nearest neighbour, zero fill; flip;
- colour jitter with probability ``jitter_p``: brightness, contrast, saturation, hue factors uniform as in
  ``ColorJitter`` and applied in a random order per image (as six affine slots around one hue pass,
  :func:`jitter_slots`);
- grayscale, Gaussian blur (sigma uniform, reflect padding, the spec's kernel), solarize (threshold 128 / 255);
- the dataset's normalisation.

The views of a batch that share a layout (both views; with multi-crop the globals, then the locals) go through one
pass (:func:`apply_views`), their parameters as one pinned float32 plan copied without waiting, so that on a GPU
the whole data path is queued ahead of the step that consumes it.

Differences from the CPU pipeline that are not distributional: the CPU pipeline rounds to uint8 after each op on
uint8 images, this path stays in float; crop borders read the neighbouring pixels instead of clamping at the crop.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ssltheory.practice.data.augment import AugSpec

GRAY = (0.2989, 0.587, 0.114)
TRIES = 10


def sample_crops(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                 g: torch.Generator) -> torch.Tensor:
    """Crop boxes (n, 4) as (top i, left j, h, w) in pixels, with ``RandomResizedCrop``'s algorithm."""
    area = height * width
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, TRIES, generator=g, dtype=torch.float64))
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * torch.rand(n, TRIES, generator=g, dtype=torch.float64))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(ok.to(torch.int8), dim=1)  # the first valid try (0 when none is valid)
    rows = torch.arange(n)
    h, w, found = h[rows, first], w[rows, first], ok[rows, first]
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    i = torch.floor(u[:, 0] * (height - h + 1)).clamp(max=height - h)
    j = torch.floor(u[:, 1] * (width - w + 1)).clamp(max=width - w)
    # fallback: the central crop at the nearest allowed ratio
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    fb = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=torch.float64)
    boxes = torch.stack([i, j, h, w], dim=1)
    return torch.where(found[:, None], boxes, fb)


def sample_params(spec: AugSpec, n: int, height: int, width: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random number of one view of ``n`` images of (height, width), drawn from ``g`` (a CPU generator).

    Returns CPU tensors: ``box`` (n, 4) float64 (i, j, h, w); ``angle`` (n,) degrees; ``flip``, ``jitter``,
    ``gray``, ``blur``, ``solarize`` (n,) bool; ``factors`` (n, 4) brightness, contrast, saturation, hue (1, 1,
    1, 0 where the op is off); ``order`` (n, 4) a permutation of the four jitter ops; ``sigma`` (n,).
    """

    def coin(p: float) -> torch.Tensor:
        return torch.rand(n, generator=g) < p

    out = {"box": sample_crops(n, height, width, spec.crop_scale, spec.crop_ratio, g)}
    out["angle"] = (2 * torch.rand(n, generator=g) - 1) * spec.rotation
    out["flip"] = coin(spec.flip_p)
    out["jitter"] = coin(spec.jitter_p) & torch.tensor(any(spec.jitter))
    b, c, s, h = spec.jitter
    u = torch.rand(n, 4, generator=g)
    out["factors"] = torch.stack([1 - b + 2 * b * u[:, 0], 1 - c + 2 * c * u[:, 1], 1 - s + 2 * s * u[:, 2],
                                  -h + 2 * h * u[:, 3]], dim=1)
    out["order"] = torch.argsort(torch.rand(n, 4, generator=g), dim=1)
    out["gray"] = coin(spec.gray_p)
    out["blur"] = coin(spec.blur_p)
    lo, hi = spec.blur_sigma
    out["sigma"] = lo + (hi - lo) * torch.rand(n, generator=g)
    out["solarize"] = coin(spec.solarize_p)
    return out


@functools.lru_cache(maxsize=64)
def _const(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """A small constant (1, len, 1, 1) tensor made once per device (a fresh host-to-device copy would wait for the
    device on every call)."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(device)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of (B, C, H, W) images (C = 1 or 3)."""
    if x.shape[1] == 1:
        return x
    return (x * _const(GRAY, x.device)).sum(1, keepdim=True)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    eq = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eq, ones, maxc)
    crd = torch.where(eq, ones, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    table = torch.stack([torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v),
                                                      (v, p, q))], 0)  # (6, B, 3, H, W)
    idx = i.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1)
    return table.gather(0, idx).squeeze(0)


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    hsv = _rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


def jitter_slots(order: torch.Tensor, factors: torch.Tensor, on: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour jitter of each image as six affine slots around one hue shift: (a, kind), each (n, 6).

    Brightness, contrast and saturation are all x -> clamp(a x + (1 - a) m) with m = 0, the mean luma, or the
    pixel's luma (``kind`` 0, 1, 2); in an image's random order the ones before its hue shift fill slots 0-2, those
    after it slots 3-5, in order, and a = 1 (the identity) fills the rest. So one pass of hue, not one per position.
    """
    n = order.shape[0]
    seq = order[order != 3].view(n, 3)  # the three affine ops in the image's order
    k = (order == 3).to(torch.int8).argmax(1)  # how many of them come before the hue shift
    before = torch.arange(3)[None] < k[:, None]
    f = factors.gather(1, seq)
    one = torch.ones_like(f)
    a = torch.cat([torch.where(before & on[:, None], f, one), torch.where(~before & on[:, None], f, one)], 1)
    return a, torch.cat([seq, seq], 1)


def _affine_slot(x: torch.Tensor, a: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """One slot of :func:`jitter_slots`: clamp(a x + (1 - a) m) per image; a, kind (B,)."""
    g = _gray(x)
    m = torch.where(kind.view(-1, 1, 1, 1) == 1, g.mean(dim=(1, 2, 3), keepdim=True), g)
    m = torch.where(kind.view(-1, 1, 1, 1) == 0, 0.0, m)
    return torch.lerp(m, x, a.view(-1, 1, 1, 1)).clamp_(0, 1)


def gaussian_kernels(sigma: torch.Tensor, k: int) -> torch.Tensor:
    """(n, k) normalised 1-D Gaussian kernels, torchvision's (taps at -(k-1)/2 .. (k-1)/2)."""
    t = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, device=sigma.device, dtype=sigma.dtype)
    w = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
    return w / w.sum(1, keepdim=True)


def _blur(x: torch.Tensor, sigma: torch.Tensor, on: torch.Tensor, k: int) -> torch.Tensor:
    B, C, H, W = x.shape
    ker = gaussian_kernels(sigma.to(x.device, x.dtype), k)
    delta = torch.zeros_like(ker)
    delta[:, k // 2] = 1.0
    ker = torch.where(on.to(x.device)[:, None], ker, delta).repeat_interleave(C, 0)  # (B*C, k)
    y = x.reshape(1, B * C, H, W)
    p = k // 2
    y = F.conv2d(F.pad(y, (p, p, 0, 0), mode="reflect"), ker.view(B * C, 1, 1, k), groups=B * C)
    y = F.conv2d(F.pad(y, (0, 0, p, p), mode="reflect"), ker.view(B * C, 1, k, 1), groups=B * C)
    return y.view(B, C, H, W)


def _rotate(x: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    a = torch.deg2rad(angle_deg.to(x.device, x.dtype))
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    # output -> input sampling grid; a positive angle turns the image counter-clockwise, as torchvision's rotate
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def crop_resize(x: torch.Tensor, box: torch.Tensor, size: int, image: torch.Tensor | None = None) -> torch.Tensor:
    """(K, C, size, size): box k (i, j, h, w) of image ``image[k]`` (default k) of x (B, C, H, W) resampled to
    size x size (bilinear, box-averaged)."""
    b = box.to(x.device, torch.float32)
    idx = torch.arange(len(b), device=x.device, dtype=torch.float32) if image is None else image.to(torch.float32)
    rois = torch.stack([idx, b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], dim=1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


PLAN = ("i", "j", "h", "w", "angle", "flip", "gray", "blur", "sigma", "solarize", "hue_on", "hue",
        *(f"a{s}" for s in range(6)), *(f"kind{s}" for s in range(6)))
"""Columns of the per-image plan: everything :func:`apply_views` reads, in one float32 row per image."""
COL = {name: k for k, name in enumerate(PLAN)}


def plan_rows(params: dict[str, torch.Tensor], spec: AugSpec) -> torch.Tensor:
    """(n, len(PLAN)) float32 on the CPU: one view's parameters (from :func:`sample_params`) as applied."""
    n = params["box"].shape[0]
    jitter = params["jitter"] & bool(spec.jitter_p and any(spec.jitter))
    a, kind = jitter_slots(params["order"], params["factors"].float(), jitter)
    hue_on = jitter & (params["factors"][:, 3] != 0)
    cols = [params["box"].float(), params["angle"].float().view(n, 1)]
    cols += [params[k].float().view(n, 1) for k in ("flip", "gray", "blur", "sigma", "solarize")]
    cols += [hue_on.float().view(n, 1), params["factors"][:, 3:4].float(), a, kind.float()]
    return torch.cat(cols, 1)


def _layout(spec: AugSpec) -> tuple:
    """What must agree for views to be augmented in one pass (the rest is per-image parameters)."""
    return spec.size, spec.kernel, spec.mean, spec.std, spec.rotation


def apply_views(images: torch.Tensor, params: list[dict[str, torch.Tensor]], specs: list[AugSpec]) -> torch.Tensor:
    """The views of ``images`` (B, C, H, W), uint8 in [0, 255] or float in [0, 1], stacked: (V B, C, size, size)
    float32 on the images' device, view v in rows v B .. (v + 1) B, with ``params[v]`` from :func:`sample_params`
    for ``specs[v]``.

    All views go through one pass of batched ops (an op with probability 0 in one spec is off for its images); the
    parameters travel to the device as one pinned float32 plan, so nothing here waits for the device."""
    if len({_layout(s) for s in specs}) > 1:
        return torch.cat([apply_views(images, [p], [s]) for p, s in zip(params, specs, strict=True)])
    spec, dev, B = specs[0], images.device, images.shape[0]
    host = torch.cat([plan_rows(p, s) for p, s in zip(params, specs, strict=True)])
    if dev.type == "cuda":
        host = host.pin_memory()
    plan = host.to(dev, non_blocking=True)
    col = {name: plan[:, k] for name, k in COL.items()}
    flag = {name: bool(host[:, COL[name]].any()) for name in ("flip", "gray", "blur", "solarize", "hue_on")}
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    source = torch.arange(B, device=dev).repeat(len(specs))
    x = crop_resize(x, plan[:, :4], spec.size, source)
    if spec.rotation:
        x = _rotate(x, col["angle"])
    if flag["flip"]:
        x = torch.where(col["flip"].view(-1, 1, 1, 1) > 0, x.flip(-1), x)
    for s in range(6):
        if s == 3 and flag["hue_on"] and x.shape[1] == 3:
            x = torch.where(col["hue_on"].view(-1, 1, 1, 1) > 0, _hue(x, col["hue"]), x)
        if bool((host[:, COL[f"a{s}"]] != 1).any()):
            x = _affine_slot(x, col[f"a{s}"], col[f"kind{s}"])
    if flag["gray"] and x.shape[1] == 3:
        x = torch.where(col["gray"].view(-1, 1, 1, 1) > 0, _gray(x).expand_as(x), x)
    if flag["blur"]:
        x = _blur(x, col["sigma"], col["blur"] > 0, spec.kernel)
    if flag["solarize"]:
        x = torch.where((col["solarize"].view(-1, 1, 1, 1) > 0) & (x >= 128 / 255), 1.0 - x, x)
    if spec.mean is not None:
        x = (x - _const(spec.mean, dev)) / _const(spec.std, dev)
    return x.contiguous()


def apply_view(images: torch.Tensor, params: dict[str, torch.Tensor], spec: AugSpec) -> torch.Tensor:
    """One augmented view (B, C, size, size) float32 of ``images`` (B, C, H, W) (see :func:`apply_views`)."""
    return apply_views(images, [params], [spec])


class BatchViews:
    """The views of a batch, one per spec (the two of :func:`.augment.view_specs`, or with multi-crop the two global
    and the N local ones of :func:`.augment.view_set`), every parameter drawn from one CPU generator (checkpointed by
    the trainer), view by view in the specs' order. Views that share a layout (size, kernel, normalisation,
    rotation) go through one batched pass: the globals together, the locals together."""

    def __init__(self, specs: tuple[AugSpec, ...], seed: int) -> None:
        self.specs = tuple(specs)
        self.generator = torch.Generator().manual_seed(seed)

    def params(self, n: int, height: int, width: int) -> tuple[dict, ...]:
        """Every view's parameters (:func:`sample_params`) for ``n`` images of (height, width), one dict per spec."""
        return tuple(sample_params(s, n, height, width, self.generator) for s in self.specs)

    def __call__(self, images: torch.Tensor, params: tuple[dict, ...] | None = None) -> tuple[torch.Tensor, ...]:
        """The views of ``images`` (B, C, H, W): a tuple with one (B, C, size_v, size_v) float32 tensor per spec;
        ``params`` (e.g. this rank's slice of the global batch's) or fresh."""
        if params is None:
            params = self.params(images.shape[0], images.shape[2], images.shape[3])
        B = images.shape[0]
        groups: dict[tuple, list[int]] = {}
        for v, s in enumerate(self.specs):
            groups.setdefault(_layout(s), []).append(v)
        made: dict[int, torch.Tensor] = {}
        for views in groups.values():
            both = apply_views(images, [params[v] for v in views], [self.specs[v] for v in views])
            for k, v in enumerate(views):
                made[v] = both[k * B:(k + 1) * B]
        return tuple(made[v] for v in range(len(self.specs)))


BatchTwoViews = BatchViews
"""The former name (two views); the same class."""
