"""UniGrad's recipe pieces (unigrad.md A4, A6): projector depth and layout, the lr floor, LARS's exclusions, CutMix,
the multi-crop setting and the feeds' tuples of views."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import beta as beta_dist
from scipy.stats import kstest
from torch import nn

from ssltheory.practice.config import TrainConfig
from ssltheory.practice.data.augment import build, view_set, view_specs
from ssltheory.practice.data.batch_augment import apply_views, sample_params
from ssltheory.practice.data.datasets import DigitsDataset, build_data
from ssltheory.practice.data.feed import DeviceFeed, LoaderFeed, rank_order
from ssltheory.practice.data.mixing import GLOBAL_SCALE, LOCAL_SCALE, beta_sample, cutmix, parse_multi_crop
from ssltheory.practice.data.schedule import make_schedule
from ssltheory.practice.engine.distributed import Dist
from ssltheory.practice.engine.optim import LARS, lr_factor, make_scheduler
from ssltheory.practice.models import projector
from ssltheory.theory.checks import ConfigError

# ---------------------------------------------------------------- projector


def _old_projector(in_dim: int, hidden: int, out: int) -> nn.Sequential:
    """The projector as it was before depth and layout became settings."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden, affine=False), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))


def test_two_layer_directpred_projector_is_the_old_module_bit_for_bit():
    """Same modules, same parameter order, and the same seeded initialisation as the old head."""
    torch.manual_seed(7)
    old = _old_projector(128, 512, 128)
    torch.manual_seed(7)
    new = projector(128, 512, 128)
    assert repr(new) == repr(old)
    assert list(new.state_dict()) == list(old.state_dict())
    for (k, a), b in zip(old.state_dict().items(), new.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    torch.manual_seed(7)
    assert torch.equal(projector(128, 512, 128, layers=2, style="directpred")[0].weight, old[0].weight)


def _param_count(style: str, layers: int, i: int, h: int, o: int) -> int:
    """By hand: each hidden Linear is w x h (+ h bias for directpred), its BN has 2 h affine parameters for unigrad
    (none for directpred); the last Linear is h x o + o (i x o + o when it is the only layer)."""
    if layers == 1:
        return i * o + o
    widths = [i] + [h] * (layers - 1)
    hidden = sum(w * h + (h if style == "directpred" else 2 * h) for w in widths[:-1])
    return hidden + h * o + o


@pytest.mark.parametrize("style", ["directpred", "unigrad"])
@pytest.mark.parametrize("layers", [1, 2, 3, 4, 5])
def test_projector_layout_shapes_and_parameter_count(style, layers):
    i, h, o = 24, 40, 16
    head = projector(i, h, o, layers=layers, style=style)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    bns = [m for m in head if isinstance(m, nn.BatchNorm1d)]
    assert len(linears) == layers and len(bns) == layers - 1
    assert sum(isinstance(m, nn.ReLU) for m in head) == layers - 1
    assert [(m.in_features, m.out_features) for m in linears] == list(zip([i] + [h] * (layers - 1),
                                                                           [h] * (layers - 1) + [o], strict=True))
    assert linears[-1].bias is not None and not isinstance(head[-1], (nn.BatchNorm1d, nn.ReLU))
    for m in linears[:-1]:
        assert (m.bias is not None) == (style == "directpred")
    for m in bns:
        assert m.affine == (style == "unigrad")
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU"] * (layers - 1) + ["Linear"]
    assert sum(p.numel() for p in head.parameters()) == _param_count(style, layers, i, h, o)
    assert head(torch.randn(6, i)).shape == (6, o)


def test_unigrads_three_layer_2048_head_has_the_hand_counted_parameters():
    """3 x 2048 x 2048 weights + 2 BNs x 2 x 2048 affine + 2048 output bias = 12,593,152; the DirectPred head
    512 -> 512 -> 128 is 512 x 512 + 512 + 512 x 128 + 128 = 328,320."""
    head = projector(2048, 2048, 2048, layers=3, style="unigrad")
    assert sum(p.numel() for p in head.parameters()) == 12_593_152
    assert sum(p.numel() for p in projector(512, 512, 128).parameters()) == 328_320


def test_projector_refuses_unknown_layouts():
    with pytest.raises(ValueError, match="style"):
        projector(8, 8, 8, style="simclr")
    with pytest.raises(ValueError, match="layers"):
        projector(8, 8, 8, layers=0)


# ---------------------------------------------------------------- lr schedule


def _old_lr_factor(step: int, total: int, warm: int, schedule: str) -> float:
    if schedule == "constant":
        return 1.0
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def test_min_lr_zero_is_the_old_schedule_exactly():
    for total, warm in ((100, 0), (100, 10), (7, 3), (1000, 999), (5, 0)):
        for schedule in ("constant", "cosine"):
            for step in range(total + 3):
                assert lr_factor(step, total, warm, schedule, 0.0) == _old_lr_factor(step, total, warm, schedule)
                assert lr_factor(step, total, warm, schedule) == _old_lr_factor(step, total, warm, schedule)


@pytest.mark.parametrize("min_lr", [1e-3, 0.25])
def test_cosine_with_a_floor_warms_up_from_it_and_ends_on_it(min_lr):
    total, warm = 100, 10
    f = [lr_factor(s, total, warm, "cosine", min_lr) for s in range(total + 1)]
    assert f[0] - (f[1] - f[0]) == pytest.approx(min_lr, abs=1e-12)  # the warm-up line starts at min_lr (step -1)
    assert f[0] == pytest.approx(min_lr + (1 - min_lr) / warm, abs=1e-15)
    assert f[warm - 1] == 1.0 and f[warm] == 1.0  # the peak: end of warm-up, start of the decay
    assert f[total] == min_lr  # the floor at the end
    assert lr_factor(total + 5, total, warm, "cosine", min_lr) == min_lr
    assert all(a < b for a, b in zip(f[:warm - 1], f[1:warm], strict=True))
    assert all(a > b for a, b in zip(f[warm:total], f[warm + 1:], strict=True))
    mid = warm + (total - warm) // 2
    assert f[mid] == pytest.approx(min_lr + (1 - min_lr) / 2, abs=1e-12)
    assert lr_factor(3, total, warm, "constant", min_lr) == 1.0


def test_the_scheduler_uses_the_configs_floor():
    cfg = TrainConfig(dataset="digits", lr_schedule="cosine", epochs=3, warmup_epochs=1, min_lr=0.1, batch_size=100,
                      device="cpu")
    schedule = make_schedule(cfg, 1297)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=cfg.resolved_lr)
    sched = make_scheduler(cfg, opt, schedule)
    total = schedule.epoch_start(cfg.epochs)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(total):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(cfg.resolved_lr * (0.1 + 0.9 / schedule.epoch_start(1)))
    assert max(lrs) == pytest.approx(cfg.resolved_lr)
    assert lrs[total] == pytest.approx(cfg.resolved_lr * 0.1)


# ---------------------------------------------------------------- LARS


def test_lars_leaves_1d_parameters_to_plain_momentum_sgd_and_scales_weights_by_the_trust_ratio():
    """A bias / BN vector: exactly torch's momentum SGD with no weight decay, over several steps. A weight matrix:
    first update lr * trust * ||w|| / ||g + wd w|| * (g + wd w), then momentum on the scaled gradients (float64, so
    that the tiny updates are not lost in w - update)."""
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    try:
        _lars_check()
    finally:
        torch.set_default_dtype(torch.float32)


def _lars_check() -> None:
    lr, mom, wd, trust = 0.5, 0.9, 0.1, 1e-3
    bias, weight = nn.Parameter(torch.randn(7)), nn.Parameter(torch.randn(5, 3))
    ref_bias = nn.Parameter(bias.detach().clone())
    w0 = weight.detach().clone()
    opt = LARS([bias, weight], lr=lr, momentum=mom, weight_decay=wd, trust=trust)
    ref = torch.optim.SGD([ref_bias], lr=lr, momentum=mom, weight_decay=0.0)
    grads = [(torch.randn(7), torch.randn(5, 3)) for _ in range(4)]
    buf = torch.zeros_like(w0)
    w = w0.clone()
    for gb, gw in grads:
        bias.grad, weight.grad, ref_bias.grad = gb.clone(), gw.clone(), gb.clone()
        opt.step()
        ref.step()
        assert torch.equal(bias, ref_bias)
        d = gw + wd * w
        buf = mom * buf + trust * torch.linalg.norm(w) / torch.linalg.norm(d) * d
        w = w - lr * buf
        assert torch.allclose(weight.detach(), w, rtol=1e-12, atol=1e-14)
    first = LARS([nn.Parameter(w0.clone())], lr=lr, momentum=mom, weight_decay=wd, trust=trust)
    first.param_groups[0]["params"][0].grad = grads[0][1].clone()
    first.step()
    d = grads[0][1] + wd * w0
    step = w0 - first.param_groups[0]["params"][0].detach()
    assert torch.allclose(step, lr * trust * torch.linalg.norm(w0) / torch.linalg.norm(d) * d, rtol=1e-9, atol=0)
    assert float(torch.linalg.norm(step)) == pytest.approx(lr * trust * float(torch.linalg.norm(w0)), rel=1e-9)


# ---------------------------------------------------------------- CutMix


def _coded(B: int, C: int, H: int, W: int) -> torch.Tensor:
    """Images whose every pixel names its image and its position: 1000 i + (h W + w)."""
    pos = torch.arange(H * W, dtype=torch.float64).view(1, 1, H, W)
    return (1000.0 * torch.arange(B, dtype=torch.float64).view(B, 1, 1, 1) + pos).expand(B, C, H, W).contiguous()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 4.0])
def test_cutmix_pastes_one_box_from_the_permuted_images_and_lam_is_the_kept_area(alpha):
    B, C, H, W = 8, 3, 12, 17
    x = _coded(B, C, H, W)
    pos = x[0, 0]
    nonempty = 0
    for seed in range(40):
        before = x.clone()
        out, perm, lam = cutmix(x, alpha, torch.Generator().manual_seed(seed))
        assert torch.equal(x, before)  # pure
        assert out.shape == x.shape and perm.dtype == torch.int64 and lam.shape == (B,)
        assert lam.dtype == torch.float32 and sorted(perm.tolist()) == list(range(B))
        assert torch.all(lam == lam[0])
        src = torch.round((out - pos) / 1000.0).long()  # (B, C, H, W): the image each pixel came from
        assert torch.equal(out - 1000.0 * src, pos.expand_as(out))  # every pixel keeps its position
        assert torch.all(src == src[:, :1])  # all channels alike
        box = src[:, 0] != torch.arange(B).view(B, 1, 1)  # (B, H, W): pixels not the image's own
        moved = perm != torch.arange(B)
        assert moved.any(), "seed with a non-identity permutation"
        mask = box[moved][0]
        assert torch.all(box[moved] == mask) and not box[~moved].any()  # one box for the batch
        for i in range(B):  # box pixels come from perm[i]
            assert torch.all(src[i, 0][mask] == perm[i])
        area = int(mask.sum())
        if area:
            nonempty += 1
            rows, cols = mask.any(1).nonzero().view(-1), mask.any(0).nonzero().view(-1)
            assert area == len(rows) * len(cols)  # a rectangle
            assert torch.all(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
        assert float(lam[0]) == pytest.approx(1 - area / (H * W), abs=1e-7)
    assert nonempty >= 30


def test_cutmix_box_area_follows_the_beta_draw_when_not_clipped():
    """lam0 = beta_sample on the same generator state; a box that the border does not clip has area
    (1 - lam0) H W up to the rounding of its sides."""
    H = W = 32
    checked = 0
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        lam0 = beta_sample(1.0, torch.Generator().manual_seed(seed))
        out, perm, lam = cutmix(_coded(4, 1, H, W), 1.0, g)
        side = round(math.sqrt(1 - lam0) * H)
        if abs((1 - float(lam[0])) * H * W - side * side) < 0.5:
            checked += 1
            assert abs((1 - float(lam[0])) - (1 - lam0)) <= (2 * side + 1) / (H * W)
    assert checked >= 25  # 30 of the 200 draws here are not clipped


def test_the_mixing_ratio_is_beta_distributed_and_cutmix_is_reproducible():
    for alpha in (0.5, 2.0):
        g = torch.Generator().manual_seed(3)
        draws = np.array([beta_sample(alpha, g) for _ in range(2000)])
        assert kstest(draws, beta_dist(alpha, alpha).cdf).pvalue > 1e-3
    x = torch.rand(6, 3, 10, 10)
    a = cutmix(x, 1.0, torch.Generator().manual_seed(11))
    b = cutmix(x, 1.0, torch.Generator().manual_seed(11))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    c = [cutmix(x, 1.0, torch.Generator().manual_seed(s)) for s in range(12, 20)]
    assert any(not torch.equal(a[0], o[0]) for o in c)
    with pytest.raises(ValueError):
        cutmix(x, 0.0, torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cutmix_on_cuda_is_the_cpu_mix():
    x = torch.rand(16, 3, 32, 32)
    cpu = cutmix(x, 1.0, torch.Generator().manual_seed(5))
    gpu = cutmix(x.cuda(), 1.0, torch.Generator().manual_seed(5))
    assert all(t.device.type == "cuda" for t in gpu)
    assert all(torch.equal(u, v.cpu()) for u, v in zip(cpu, gpu, strict=True))


# ---------------------------------------------------------------- multi-crop setting


def test_parse_multi_crop_accepts_nxsize_and_nothing_else():
    assert parse_multi_crop("6x96") == (6, 96)
    assert parse_multi_crop("") == (0, 0)
    assert parse_multi_crop("1x1") == (1, 1) and parse_multi_crop("32x4096") == (32, 4096)
    for bad in ("6*96", "6X96", "x96", "6x", " 6x96", "6x96x2", "0x96", "33x96", "6x0", "6x4097", "-1x96", "six"):
        with pytest.raises(ConfigError) as e:
            parse_multi_crop(bad)
        text = str(e.value)
        assert "\n" not in text and repr(bad) in text and "NxSIZE" in text
    with pytest.raises(ConfigError, match="does not parse"):
        TrainConfig(dataset="digits", method="unigrad", multi_crop="6*96")


def test_view_set_is_two_global_and_n_local_specs():
    assert view_set("cifar10", 32) == view_specs("cifar10", 32)
    s1, s2 = view_specs("stl10", 96)
    specs = view_set("stl10", 96, "6x48")
    assert len(specs) == 8
    assert specs[0].crop_scale == specs[1].crop_scale == GLOBAL_SCALE and specs[0].size == 96
    for s in specs[2:]:
        assert s.size == 48 and s.crop_scale == LOCAL_SCALE and s.jitter == s1.jitter and s.flip_p == s1.flip_p
        assert s.kernel == 5  # STL-10's kernel 9 belongs to 96 px; at 48 px a tenth of the size, odd
    assert view_set("stl10", 96, "2x96")[2].kernel == 9


# ---------------------------------------------------------------- feeds


def _cfg(path: str, multi_crop: str = "") -> TrainConfig:
    method = "unigrad" if multi_crop else "byol"
    return TrainConfig(dataset="digits", method=method, batch_size=200, data_path=path, device="cpu",
                       multi_crop=multi_crop, seed=2)


def _feed(path: str, multi_crop: str = ""):
    cfg = _cfg(path, multi_crop)
    data = build_data(cfg)
    cls = DeviceFeed if path == "device" else LoaderFeed
    return cfg, data.ssl, cls(cfg, data.ssl, torch.device("cpu"), Dist(), make_schedule(cfg, len(data.ssl)))


@pytest.mark.parametrize("path", ["device", "loader"])
def test_multi_crop_feeds_yield_two_global_and_n_local_views(path):
    _, _, feed = _feed(path, "3x4")
    batches = list(feed.epoch(0, 0))
    assert len(batches) == 1297 // 200
    for views in batches:
        assert isinstance(views, tuple) and len(views) == 5
        assert [tuple(v.shape) for v in views] == [(200, 1, 8, 8)] * 2 + [(200, 1, 4, 4)] * 3
        assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)
        assert not torch.equal(views[2], views[3])  # locals are separate draws


@pytest.mark.parametrize("path", ["device", "loader"])
def test_without_multi_crop_the_feeds_yield_the_old_pairs(path):
    """The old pairs, recomputed here the old way: the device path drew view 1's then view 2's parameters per batch
    from Generator(seed * 31 + 17) and augmented both in one pass; the loader path applied view 1's then view 2's
    torchvision pipeline to each image in the epoch's order, from torch's global generator."""
    cfg, ds, feed = _feed(path)
    s1, s2 = view_specs("digits", 8)
    idx = rank_order(make_schedule(cfg, len(ds)).order(1), 200, 0, Dist()).view(-1, 200)
    torch.manual_seed(4)
    got = list(feed.epoch(1, 0))
    assert len(got) == len(idx)
    if path == "device":
        g = torch.Generator().manual_seed(cfg.seed * 31 + 17)
        images = DigitsDataset("train").images
        for views, rows in zip(got, idx, strict=True):
            p1, p2 = sample_params(s1, 200, 8, 8, g), sample_params(s2, 200, 8, 8, g)
            both = apply_views(images[rows], [p1, p2], [s1, s2])
            assert len(views) == 2 and torch.equal(views[0], both[:200]) and torch.equal(views[1], both[200:])
    else:
        torch.manual_seed(4)
        t1, t2, images = build(s1), build(s2), DigitsDataset("train").images
        for views, rows in zip(got, idx, strict=True):
            pairs = [(t1(images[i]), t2(images[i])) for i in rows.tolist()]
            assert len(views) == 2
            assert torch.equal(views[0], torch.stack([a for a, _ in pairs]))
            assert torch.equal(views[1], torch.stack([b for _, b in pairs]))


def test_device_feed_resumes_multi_crop_batches_exactly():
    """A checkpoint of the device feed's generator, taken with a batch made ahead, resumes to the same next batch,
    locals included."""
    _, _, feed = _feed("device", "2x6")
    batches, states = [], []
    for views in feed.epoch(0, 0):
        feed.prefetch()
        batches.append(views)
        states.append(feed.state_dict())
    k = 2
    _, _, resumed = _feed("device", "2x6")
    resumed.load_state_dict(states[k])
    nxt = next(iter(resumed.epoch(0, k + 1)))
    assert len(nxt) == 4 and all(torch.equal(a, b) for a, b in zip(nxt, batches[k + 1], strict=True))
