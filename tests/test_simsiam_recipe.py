"""The collapse paper's SimSiam recipe and model sizes (collapse.md B2): the official projector and predictor, the
fixed predictor lr, the model-size backbones from torchvision's ResNet class, the convnet's width, the recipe's lr
and weight decay against the official loss, one tiny run, and bad input."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ssltheory.experiments.recipes import SIMSIAM_LOSS_SCALE, SIMSIAM_RECIPE, simsiam_argv, simsiam_recipe
from ssltheory.practice.config import TrainConfig
from ssltheory.practice.engine.optim import make_optimizer, make_scheduler
from ssltheory.practice.engine.step import build_model
from ssltheory.practice.methods.objectives import symmetric_loss
from ssltheory.practice.methods.predictors import MLPPredictor, build_predictor
from ssltheory.practice.models import backbone, projector
from ssltheory.theory.checks import ConfigError


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- projector and predictor


def _official(prev_dim: int, dim: int = 2048, pred_dim: int = 512) -> tuple[nn.Sequential, nn.Sequential]:
    """The official SimSiam builder's projector (the encoder's fc) and predictor, as its code writes them."""
    fc = nn.Linear(prev_dim, dim)
    head = nn.Sequential(nn.Linear(prev_dim, prev_dim, bias=False), nn.BatchNorm1d(prev_dim), nn.ReLU(inplace=True),
                         nn.Linear(prev_dim, prev_dim, bias=False), nn.BatchNorm1d(prev_dim), nn.ReLU(inplace=True),
                         fc, nn.BatchNorm1d(dim, affine=False))
    head[6].bias.requires_grad = False  # the official "hack": not use bias as it is followed by BN
    pred = nn.Sequential(nn.Linear(dim, pred_dim, bias=False), nn.BatchNorm1d(pred_dim), nn.ReLU(inplace=True),
                         nn.Linear(pred_dim, dim))
    return head, pred


def test_simsiam_projector_and_predictor_are_the_official_modules():
    """Same layers, Linear shapes and biases, BN affine flags; with the official weights copied in (its frozen
    output bias left out) the same outputs in train mode, where the non-affine BN subtracts that bias, and in eval
    mode once the official BN's running mean has taken it in."""
    torch.manual_seed(0)
    official_head, official_pred = _official(512)
    head = projector(512, 999, 2048, layers=3, style="simsiam")  # hidden is prev_dim, whatever is passed
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert kinds == [type(m).__name__ for m in official_head]
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 512), (512, 2048)]
    assert all(m.bias is None for m in linears)
    assert [m.affine for m in head if isinstance(m, nn.BatchNorm1d)] == [True, True, False]
    pred = MLPPredictor(2048, 512, "simsiam")
    assert [type(m).__name__ for m in pred.net] == [type(m).__name__ for m in official_pred]
    assert [(k, v.shape) for k, v in pred.net.state_dict().items()] == \
        [(k, v.shape) for k, v in official_pred.state_dict().items()]
    assert pred.net[0].bias is None and pred.net[3].bias is not None and pred.net[1].affine
    with torch.no_grad():  # official weights, BN affine parameters moved off their init
        for m in (*official_head, *official_pred):
            if isinstance(m, nn.BatchNorm1d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
        official_head[6].bias.normal_()
    head.load_state_dict({k: v for k, v in official_head.state_dict().items() if k != "6.bias"})
    pred.net.load_state_dict(official_pred.state_dict())
    x = torch.randn(32, 512)
    z = head(x)
    torch.testing.assert_close(z, official_head(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pred(z), official_pred(z), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # eval mode: once the official running mean has taken in its bias (1 - 0.9^t of it)
        for _ in range(150):
            head(x), official_head(x), pred(z), official_pred(z)
    for m in (head, official_head, pred, official_pred):
        m.eval()
    z = head(x)
    torch.testing.assert_close(z, official_head(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pred(z), official_pred(z), rtol=1e-5, atol=1e-5)
    # the projector for --proj-layers 1 and 2: Linear -> BN(affine=False) last, hidden blocks prev_dim wide
    assert [type(m).__name__ for m in projector(64, 8, 32, 1, "simsiam")] == ["Linear", "BatchNorm1d"]
    assert _params(projector(64, 8, 32, 2, "simsiam")) == 64 * 64 + 2 * 64 + 64 * 32


def test_the_recipe_builds_the_official_heads_on_the_backbones_width():
    """Through build_model: the projector prev_dim-prev_dim-2048 with prev_dim the backbone's .dim (the convnet's
    at --width 2: 256), the predictor 2048-512-2048; the default mlp predictor keeps the DirectPred layout."""
    cfg = TrainConfig.from_settings(simsiam_recipe(dataset="digits", width=2.0))
    model = build_model(cfg, 1, torch.device("cpu"))
    assert model.online.backbone.dim == 256
    linears = [m for m in model.online.projector if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 256), (256, 256), (256, 2048)]
    net = model.predictor.net
    assert (net[0].in_features, net[0].out_features, net[3].out_features) == (2048, 512, 2048)
    assert net[0].bias is None and net[1].affine
    old = build_predictor(TrainConfig(predictor="mlp"), 128)
    assert old.net[0].bias is not None and not old.net[1].affine


# ---------------------------------------------------------------- model sizes


@pytest.mark.parametrize("name,width,block,layers,tv_width,dim", [
    ("resnet18-bottleneck", 64, Bottleneck, [2, 2, 2, 2], 64, 2048),
    ("resnet18-bottleneck", 96, Bottleneck, [2, 2, 2, 2], 96, 2048),
    ("resnet18-bottleneck", 128, Bottleneck, [2, 2, 2, 2], 128, 2048),
    ("resnet18-bottleneck", None, Bottleneck, [2, 2, 2, 2], 64, 2048),
    ("resnet50-basic", None, BasicBlock, [5, 6, 9, 4], 64, 512),
])
def test_model_sizes_are_torchvisions_resnets(name, width, block, layers, tv_width, dim):
    """Parameter counts equal torchvision.models.ResNet(block, layers, width_per_group=w) without its fc (the
    collapse code's resnet_variants.py), the same state dict shapes, .dim the feature width; the bottleneck's
    3x3 convs are width_per_group wide in layer1; the CIFAR stem on small inputs as for the other ResNets."""
    net = backbone(name, 3, 224, width=width)
    ref = torchvision.models.ResNet(block, layers, width_per_group=tv_width)
    fc = ref.fc.in_features * 1000 + 1000
    assert _params(net) == _params(ref) - fc
    assert {k: v.shape for k, v in net.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    assert net.dim == ref.fc.in_features == dim
    if block is Bottleneck:
        assert net.layer1[0].conv2.out_channels == tv_width
    small = backbone(name, 1, 32, width=width)
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)
    assert small(torch.randn(2, 1, 32, 32)).shape == (2, dim)


def test_resnet_parameter_counts_by_hand():
    """ResNet-18-bottleneck at width 64 is ResNet-50's trunk with [2, 2, 2, 2] blocks: 13,946,176 parameters
    without the fc (counted by hand below); widths 96 and 128 widen only the blocks' inner convs and BNs."""
    def bottleneck_resnet(w: int, layers=(2, 2, 2, 2)) -> int:
        total, inplanes = 3 * 64 * 49 + 2 * 64, 64  # stem conv 7x7 and its BN
        for stage, n in enumerate(layers):
            planes = 64 * 2 ** stage
            inner, out = planes * w // 64, planes * 4
            for i in range(n):
                total += inplanes * inner + 2 * inner + 9 * inner * inner + 2 * inner + inner * out + 2 * out
                if i == 0:  # the downsample (1x1 conv and BN): every stage's first block changes width
                    total += inplanes * out + 2 * out
                inplanes = out
        return total

    counts = {w: _params(backbone("resnet18-bottleneck", 3, 224, width=w)) for w in (64, 96, 128)}
    assert counts == {w: bottleneck_resnet(w) for w in (64, 96, 128)}
    assert counts[64] == 13_946_176


def _convnet_today() -> nn.Sequential:
    """The convnet as it was before --width: 32-64-128 channels."""
    def block(i: int, o: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(1, 32, 1), *block(32, 64, 2), *block(64, 128, 2), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def test_convnet_width_1_is_unchanged_and_width_2_has_four_times_the_parameters():
    x = torch.randn(5, 1, 8, 8)
    torch.manual_seed(11)
    old = _convnet_today()
    for width in (None, 1.0):
        torch.manual_seed(11)
        net = backbone("convnet", 1, 8, width=width)
        assert net.dim == 128 and _params(net) == _params(old) == 92_896
        assert torch.equal(net(x), old(x))
    wide = backbone("convnet", 1, 8, width=2.0)
    assert wide.dim == 256
    assert 3.9 < _params(wide) / _params(old) < 4.0  # 4x but for the first conv, linear in the width


# ---------------------------------------------------------------- the fixed predictor lr


@pytest.mark.parametrize("warmup", [0, 1])
def test_fix_pred_lr_keeps_the_predictor_lr_while_the_encoder_decays(warmup):
    """Over a cosine schedule of 4 epochs x 5 steps: the predictor group follows the warm-up, then stays at its peak
    (lr x alpha_p); the online group decays to 0. Without the flag both decay."""
    schedule = SimpleNamespace(epoch_start=lambda e: 5 * e, frozen=lambda s: False)  # an iid schedule's answers

    def lrs(fix: bool) -> dict[str, list[float]]:
        cfg = TrainConfig(predictor="mlp", lr_schedule="cosine", epochs=4, warmup_epochs=warmup, lr=0.2, alpha_p=2.0,
                          fix_pred_lr=fix)
        opt = make_optimizer(cfg, nn.Linear(3, 3), MLPPredictor(4, 8))
        sched = make_scheduler(cfg, opt, schedule)
        seen: dict[str, list[float]] = {g["name"]: [] for g in opt.param_groups}
        for _ in range(20):
            for g in opt.param_groups:
                seen[g["name"]].append(g["lr"])
            opt.step()
            sched.step()
        return seen

    fixed, decayed = lrs(True), lrs(False)
    warm = 5 * warmup
    assert fixed["predictor"][warm:] == [0.4] * (20 - warm)
    assert fixed["predictor"][:warm] == pytest.approx([2 * x for x in fixed["online"][:warm]])
    assert fixed["online"] == decayed["online"]
    assert fixed["online"][warm] == pytest.approx(0.2) and fixed["online"][-1] < 0.2 * 0.02
    assert decayed["predictor"] == pytest.approx([2 * x for x in decayed["online"]])


# ---------------------------------------------------------------- the recipe


def test_recipe_lr_and_weight_decay_make_the_official_sgd_updates():
    """The trainer's SimSiam loss has SIMSIAM_LOSS_SCALE x the official's gradient; with the recipe's lr / 4 and
    wd x 4, SGD with momentum makes the official updates (lr 0.05, wd 1e-4) step for step."""
    assert SIMSIAM_RECIPE["lr"] == pytest.approx(0.05 / SIMSIAM_LOSS_SCALE)
    assert SIMSIAM_RECIPE["weight_decay"] == pytest.approx(1e-4 * SIMSIAM_LOSS_SCALE)
    torch.manual_seed(3)
    official = nn.ModuleList([nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8)),
                              nn.Sequential(nn.Linear(8, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(),
                                            nn.Linear(4, 8))])
    ours, start = copy.deepcopy(official), copy.deepcopy(official)
    opts = [torch.optim.SGD(official.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4),
            torch.optim.SGD(ours.parameters(), lr=SIMSIAM_RECIPE["lr"], momentum=0.9,
                            weight_decay=SIMSIAM_RECIPE["weight_decay"])]
    cos = nn.functional.cosine_similarity
    for step in range(3):
        g = torch.Generator().manual_seed(step)
        x1, x2 = torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g)
        for (enc, pred), opt, kind in zip((official, ours), opts, ("official", "trainer"), strict=True):
            z1, z2 = enc(x1), enc(x2)
            p1, p2 = pred(z1), pred(z2)
            loss = (-0.5 * (cos(p1, z2.detach()).mean() + cos(p2, z1.detach()).mean()) if kind == "official"
                    else symmetric_loss(p1, p2, z1.detach(), z2.detach()))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b, a0 in zip(official.parameters(), ours.parameters(), start.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        assert not torch.equal(a, a0)  # every parameter moved


def test_recipe_settings_and_argv():
    """The recipe as settings and flags: the official values; zero_init_residual only for ResNets."""
    r = simsiam_recipe(dataset="cifar10", backbone="resnet18-bottleneck", width=96)
    cfg = TrainConfig.from_settings(r)
    assert (cfg.method, cfg.projector, cfg.proj_layers, cfg.proj_dim, cfg.predictor, cfg.pred_hidden,
            cfg.pred_layout, cfg.fix_pred_lr, cfg.zero_init_residual) == \
        ("simsiam", "simsiam", 3, 2048, "mlp", 512, "simsiam", True, True)
    assert (cfg.lr_schedule, cfg.resolved_momentum, cfg.warmup_epochs, cfg.min_lr) == ("cosine", 0.9, 0, 0.0)
    assert cfg.resolved_lr == pytest.approx(0.05 / SIMSIAM_LOSS_SCALE)  # batch 256: x 1
    assert TrainConfig.from_settings(simsiam_recipe(batch_size=512)).resolved_lr == pytest.approx(0.025)
    assert "zero_init_residual" not in simsiam_recipe(dataset="digits")
    argv = simsiam_argv(dataset="digits", width=0.5)
    assert argv[0] == "digits" and "--fix-pred-lr" in argv and argv[argv.index("--width") + 1] == "0.5"
    with pytest.raises(ConfigError, match="--width"):
        simsiam_recipe(dataset="digits", backbone="resnet50-basic", width=96)


def test_a_tiny_digits_run_with_the_recipe(tmp_path):
    from ssltheory.practice.engine.train import train

    cfg = TrainConfig.from_settings(simsiam_recipe(dataset="digits", width=0.5, batch_size=64, max_steps=3,
                                                   measure_every=3, probe_size=64, knn_every=0, device="cpu"))
    summary = train(cfg, tmp_path / "run")
    assert summary["steps"] == 3 and (tmp_path / "run" / "checkpoint.pt").is_file()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["projector"] == "simsiam" and saved["fix_pred_lr"] is True


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("settings,needle", [
    ({"width": 0}, "--width 0"),
    ({"width": -2}, "--width -2"),
    ({"backbone": "resnet18", "width": 2}, "--width 2 with --backbone resnet18"),
    ({"backbone": "resnet50-basic", "width": 64}, "--backbone resnet50-basic"),
    ({"backbone": "resnet18-bottleneck", "width": 96.5}, "whole width_per_group"),
    ({"width": 100}, "channel multiplier"),
    ({"dataset": "synthetic", "projector": "simsiam"}, "--projector simsiam with --backbone linear"),
    ({"projector": "simsiam", "proj_hidden": 64}, "--proj-hidden 64"),
    ({"pred_layout": "simsiam"}, "--predictor mlp"),
    ({"predictor": "directpred", "fix_pred_lr": True}, "--fix-pred-lr"),
    ({"zero_init_residual": True}, "--zero-init-residual with --backbone convnet"),
])
def test_bad_settings_are_one_line_errors(settings, needle):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_settings({"dataset": "digits", **settings})
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_bad_width_on_the_command_line_is_one_line_exit_2(tmp_path):
    from conftest import cli

    r = cli("train", "digits", "--backbone", "resnet50-basic", "--width", "2", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--width 2 with --backbone resnet50-basic" in r.stderr


def test_the_paper_scale_recipes_move_the_lr_per_epoch_as_the_official_code():
    """collapse.md B2: the official cosine is set once per epoch; the paper scale follows it, the cpu and smoke
    scales keep the step schedule their recorded results (experiments/results/collapse-cpu) were measured with."""
    from ssltheory.experiments.recipes import RECIPES

    assert SIMSIAM_RECIPE["lr_schedule_unit"] == "epoch"
    assert TrainConfig.from_settings(simsiam_recipe(dataset="digits")).lr_schedule_unit == "epoch"
    for name in ("collapse-imagenet", "collapse-places"):
        units = {scale: {c.lr_schedule_unit for c in RECIPES[name].configs(scale).values()}
                 for scale in ("paper", "cpu", "smoke")}
        assert units == {"paper": {"epoch"}, "cpu": {"step"}, "smoke": {"step"}}, (name, units)
