"""The batched (GPU) augmentation draws from the same distributions as the CPU torchvision pipeline, and applies the
same functions. Everything runs on CPU tensors with the code the GPU runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T1
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from scipy.stats import chisquare, ks_2samp

from ssltheory.practice.data.augment import build, view_specs
from ssltheory.practice.data.batch_augment import BatchTwoViews, apply_view, sample_crops, sample_params

N = 4000
ALL = [(d, v) for d in ("stl10", "cifar10", "imagenet", "digits") for v in (0, 1)]


def _pipeline_settings(compose: T.Compose) -> dict:
    """The random settings of a CPU pipeline, read off its torchvision transform objects."""
    out = {"flip_p": 0.0, "jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0, "solarize_p": 0.0, "rotation": 0.0}
    for t in compose.transforms:
        if isinstance(t, T.RandomResizedCrop):
            out["crop_scale"], out["crop_ratio"] = tuple(t.scale), tuple(t.ratio)
        elif isinstance(t, T.RandomHorizontalFlip):
            out["flip_p"] = t.p
        elif isinstance(t, T.RandomRotation):
            out["rotation"] = float(t.degrees[1])
        elif isinstance(t, T.RandomGrayscale):
            out["gray_p"] = t.p
        elif isinstance(t, T.RandomSolarize):
            out["solarize_p"], out["solarize_threshold"] = t.p, t.threshold
        elif isinstance(t, T.RandomApply):
            inner = t.transforms[0]
            if isinstance(inner, T.ColorJitter):
                out["jitter_p"] = t.p
                out["jitter"] = tuple(0.0 if r is None else float(r[1] - 1 if i < 3 else r[1])
                                      for i, r in enumerate((inner.brightness, inner.contrast, inner.saturation,
                                                             inner.hue)))
            else:
                out["blur_p"], out["blur_sigma"], out["kernel"] = t.p, tuple(inner.sigma), inner.kernel_size[0]
    return out


@pytest.mark.parametrize("dataset,view", ALL)
def test_the_spec_the_batch_path_reads_is_the_cpu_pipeline(dataset, view):
    """Every probability and range the batched path samples from is the one the torchvision pipeline holds."""
    spec = view_specs(dataset, 32)[view]
    got = _pipeline_settings(build(spec))
    for key in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p", "crop_scale", "crop_ratio", "rotation"):
        assert got[key] == pytest.approx(getattr(spec, key)), key
    if spec.jitter_p:
        assert got["jitter"] == pytest.approx(spec.jitter)
    if spec.blur_p:
        assert got["blur_sigma"] == pytest.approx(spec.blur_sigma) and got["kernel"] == spec.kernel
    if spec.solarize_p:
        assert got["solarize_threshold"] == 128


@pytest.mark.parametrize("height,width,scale", [(32, 32, (0.08, 1.0)), (96, 96, (0.08, 1.0)), (8, 8, (0.5, 1.0)),
                                                (12, 100, (0.6, 1.0))])
def test_crop_boxes_follow_torchvisions_algorithm(height, width, scale):
    """Area fraction, aspect ratio and position of the crops: two-sample KS against RandomResizedCrop.get_params
    (p > 1e-3); the last case (a 12 x 100 strip) mostly takes the central-crop fallback, whose rate must match."""
    ratio = (3 / 4, 4 / 3)
    torch.manual_seed(0)
    img = torch.zeros(1, height, width)
    ref = np.array([T1.RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(N)], float)
    got = sample_crops(N, height, width, scale, ratio, torch.Generator().manual_seed(1)).numpy()
    for name, f in {"area": lambda b: b[:, 2] * b[:, 3], "log ratio": lambda b: np.log(b[:, 3] / b[:, 2]),
                    "top": lambda b: b[:, 0] / np.maximum(height - b[:, 2], 1),
                    "left": lambda b: b[:, 1] / np.maximum(width - b[:, 3], 1)}.items():
        assert ks_2samp(f(ref), f(got)).pvalue > 1e-3, name
    fallback = np.array([(height - min(height, round(width * 3 / 4 if width < height else height * 4 / 3))) // 2])
    assert abs(np.mean(ref[:, 0] == fallback[0]) - np.mean(got[:, 0] == fallback[0])) < 0.05


def test_jitter_factors_order_and_sigma_follow_torchvision():
    spec = view_specs("stl10", 32)[0]
    b, c, s, h = spec.jitter
    torch.manual_seed(0)
    ref = [T1.ColorJitter.get_params([1 - b, 1 + b], [1 - c, 1 + c], [1 - s, 1 + s], [-h, h]) for _ in range(N)]
    got = sample_params(spec, N, 32, 32, torch.Generator().manual_seed(2))
    for k in range(4):
        assert ks_2samp([r[k + 1] for r in ref], got["factors"][:, k].numpy()).pvalue > 1e-3, k
    # the order: all 24 permutations equally likely, as torch.randperm(4)
    codes = (got["order"] * torch.tensor([64, 16, 4, 1])).sum(1).numpy()
    counts = np.unique(codes, return_counts=True)[1]
    assert len(counts) == 24 and chisquare(counts).pvalue > 1e-3
    sig = [T1.GaussianBlur.get_params(*spec.blur_sigma) for _ in range(N)]
    assert ks_2samp(sig, got["sigma"].numpy()).pvalue > 1e-3


@pytest.mark.parametrize("dataset,view", ALL)
def test_probabilities_match_the_spec(dataset, view):
    """Empirical rates of flip, jitter, grayscale, blur, solarize within 4 binomial sigmas of the pipeline's p."""
    spec = view_specs(dataset, 32)[view]
    got = sample_params(spec, N, 32, 32, torch.Generator().manual_seed(3))
    settings = _pipeline_settings(build(spec))
    for key, p in (("flip", settings["flip_p"]), ("jitter", settings["jitter_p"]), ("gray", settings["gray_p"]),
                   ("blur", settings["blur_p"]), ("solarize", settings["solarize_p"])):
        rate = got[key].float().mean().item()
        assert abs(rate - p) <= 4 * np.sqrt(p * (1 - p) / N) + 1e-9, (key, rate, p)


def _fixed(n: int, **kw) -> dict:
    base = {"box": torch.tensor([[0.0, 0.0, 16.0, 16.0]] * n, dtype=torch.float64), "angle": torch.zeros(n),
            "flip": torch.zeros(n, dtype=torch.bool), "jitter": torch.zeros(n, dtype=torch.bool),
            "factors": torch.tensor([[1.0, 1.0, 1.0, 0.0]] * n), "order": torch.arange(4).repeat(n, 1),
            "gray": torch.zeros(n, dtype=torch.bool), "blur": torch.zeros(n, dtype=torch.bool),
            "sigma": torch.ones(n), "solarize": torch.zeros(n, dtype=torch.bool)}
    base.update(kw)
    return base


def test_fixed_parameters_give_torchvisions_images():
    """With the same parameters, jitter (in a random order), grayscale, blur, flip and solarize equal torchvision's
    functional ops to float rounding, per image."""
    torch.manual_seed(0)
    n, spec = 6, view_specs("imagenet", 16)[1]
    x = torch.rand(n, 3, 16, 16)
    order = torch.stack([torch.randperm(4) for _ in range(n)])
    factors = torch.tensor([[1.3, 0.7, 1.2, 0.08], [0.7, 1.3, 0.8, -0.1], [1.0, 1.1, 0.9, 0.03]] * 2)
    on = torch.tensor([True, True, False, True, True, True])
    p = _fixed(n, flip=torch.tensor([True, False] * 3), jitter=on, factors=factors, order=order,
               gray=torch.tensor([False, False, False, True, False, False]),
               blur=torch.tensor([True, False, True, False, False, True]), sigma=torch.tensor([0.5, 1, 1.7, 1, 1, 2.0]),
               solarize=torch.tensor([False, True, False, False, True, False]))
    spec = type(spec)(16, jitter=spec.jitter, blur_p=0.5, solarize_p=0.5, gray_p=0.2)
    got = apply_view(x, p, spec)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(n):
        y = x[i]
        y = TF.horizontal_flip(y) if p["flip"][i] else y
        if on[i]:
            for op in order[i].tolist():
                y = ops[op](y, float(factors[i, op]))
        y = TF.rgb_to_grayscale(y, 3) if p["gray"][i] else y
        y = TF.gaussian_blur(y, [spec.kernel] * 2, [float(p["sigma"][i])] * 2) if p["blur"][i] else y
        y = torch.where(y >= 128 / 255, 1 - y, y) if p["solarize"][i] else y
        assert (got[i] - y).abs().max() < 1e-5, i


def test_crop_matches_resized_crop_and_rotation_matches_rotate():
    """Crops resampled by roi_align stay close to torchvision's resized_crop (smooth images; mean abs error < 2%
    of the range), and the rotation turns the same way as torchvision's rotate (most pixels equal)."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 48), indexing="ij")
    x = torch.stack([xx, yy, (xx * yy)]).unsqueeze(0).repeat(3, 1, 1, 1)
    boxes = torch.tensor([[3.0, 5.0, 20.0, 30.0], [0.0, 0.0, 40.0, 48.0], [10.0, 2.0, 30.0, 12.0]], dtype=torch.float64)
    from ssltheory.practice.data.batch_augment import _rotate, crop_resize

    got = crop_resize(x, boxes, 24)
    for k, (i, j, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(x[k], i, j, h, w, [24, 24], antialias=True)
        assert (got[k] - ref).abs().mean() < 0.02, k
    digits = torch.zeros(2, 1, 16, 16)
    digits[:, :, 2:14, 6:9] = 1.0
    rot = _rotate(digits, torch.tensor([10.0, -10.0]))
    for k, a in enumerate((10.0, -10.0)):
        assert (rot[k] == TF.rotate(digits[k], a)).float().mean() > 0.97


def test_views_have_the_cpu_pipelines_pixel_statistics():
    """End to end: the mean and contrast of a view of the same image, over 1,200 draws, have the same distribution
    through the CPU pipeline and the batched one (KS p > 1e-3), for CIFAR-10, STL-10 and BYOL's first view.

    The image is float: on uint8 images torchvision rounds after every op, which shifts the mean by ~0.004 (in
    normalised units) and is visible to KS at this n; that rounding is not part of the distribution. (Solarize, which
    torchvision allows on uint8 only, is checked with fixed parameters above.)"""
    torch.manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4), size=(32, 32), mode="bilinear")[0]
    n = 1200
    for spec in (view_specs("cifar10", 32)[0], view_specs("stl10", 32)[0], view_specs("imagenet", 32)[0]):
        cpu = build(spec)
        ref = torch.stack([cpu(img) for _ in range(n)])
        got = BatchTwoViews((spec, spec), seed=5)(img.unsqueeze(0).expand(n, -1, -1, -1).contiguous())[0]
        for stat in (lambda v: v.mean(dim=(1, 2, 3)), lambda v: v.std(dim=(1, 2, 3))):
            assert ks_2samp(stat(ref).numpy(), stat(got).numpy()).pvalue > 1e-3


def test_a_ranks_slice_of_the_global_draw_is_what_a_single_process_draws():
    """DDP: every rank draws the global batch's parameters and augments its slice; rank r's views are rows
    r*B/W .. (r+1)*B/W of the one-process views."""
    spec = view_specs("cifar10", 32)
    x = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    one = BatchTwoViews(spec, seed=9)(x)[0]
    for r in range(2):
        aug = BatchTwoViews(spec, seed=9)
        params = aug.params(8, 32, 32)
        mine = tuple({k: v[4 * r: 4 * r + 4] for k, v in p.items()} for p in params)
        assert torch.allclose(aug(x[4 * r: 4 * r + 4], mine)[0], one[4 * r: 4 * r + 4], atol=1e-6)


def test_both_views_in_one_pass_equal_each_view_alone():
    """BYOL's asymmetric views (blur 1.0 / 0.1, solarize 0 / 0.2) go through one batched pass; each view equals its
    own pass (an op off in one spec is off for its images)."""
    s1, s2 = view_specs("imagenet", 24)
    x = (torch.rand(16, 3, 40, 40) * 255).to(torch.uint8)
    aug = BatchTwoViews((s1, s2), seed=3)
    p1, p2 = aug.params(16, 40, 40)
    v1, v2 = aug(x, (p1, p2))
    assert torch.allclose(v1, apply_view(x, p1, s1), atol=1e-6)
    assert torch.allclose(v2, apply_view(x, p2, s2), atol=1e-6)
