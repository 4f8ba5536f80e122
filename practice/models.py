"""Backbones (torchvision ResNets with the CIFAR stem for small inputs, a small convnet for CPU) and the projector."""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ssltheory.practice.data.registry import DATASETS
from ssltheory.practice.settings import Setting, declare, rule
from ssltheory.theory.checks import ConfigError

CONVNET_WIDTH = 32
"""Channels of the convnet's first block at ``--width 1`` (then 2x and 4x; ``dim`` = 4x = 128)."""


class ConvNet(nn.Module):
    """A small CPU-friendly backbone: three conv-BN-ReLU blocks (``width``, 2 ``width``, 4 ``width`` channels) and
    global average pooling; ``dim`` = 4 ``width`` (128 at the default 32)."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()

        def block(i: int, o: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.net = nn.Sequential(*block(in_channels, width, 1), *block(width, 2 * width, 2),
                                 *block(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


RESNET_VARIANTS = {"resnet18-bottleneck": (Bottleneck, [2, 2, 2, 2]), "resnet50-basic": (BasicBlock, [5, 6, 9, 4])}
"""The collapse study's model sizes (its ``resnet_variants.py``), as torchvision ResNet's (block, layers):
ResNet-18's depth with Bottleneck blocks (``resnet18_bottleneck_w64/96/128``: width_per_group 64/96/128, 2048-d
features at every width) and a 50-layer ResNet of BasicBlocks (``resnet50_nobottleneck``: 2 x 24 convs + stem + fc,
512-d features)."""
WIDTHS = {"convnet": 1.0, "resnet18-bottleneck": 64}
"""The backbones that take ``--width``, with its default: the convnet's channel multiplier, torchvision's
``width_per_group`` of the bottleneck ResNet-18."""


def resnet(name: str, in_channels: int = 3, small_input: bool = False, width: int | None = None,
           zero_init_residual: bool = False) -> nn.Module:
    """torchvision ResNet-18/34/50 or a :data:`RESNET_VARIANTS` one without its classifier (``fc`` = Identity;
    ``.dim`` = 512 or 2048).

    ``small_input`` (inputs <= 64 px) swaps the stem for a 3x3 stride-1 conv and removes the max-pool (the CIFAR
    stem of the official code); ``in_channels`` other than 3 replaces the first conv. ``width``: width_per_group of
    ``resnet18-bottleneck`` (default 64); ``zero_init_residual``: torchvision's (the last BN of each block starts
    at 0, as the SimSiam code builds its ResNets).
    """
    if name in RESNET_VARIANTS:
        block, layers = RESNET_VARIANTS[name]
        extra = {"width_per_group": int(width or WIDTHS[name])} if name in WIDTHS else {}
        net = torchvision.models.ResNet(block, layers, zero_init_residual=zero_init_residual, **extra)
    else:
        net = getattr(torchvision.models, name)(weights=None, zero_init_residual=zero_init_residual)
    dim = net.fc.in_features
    if small_input:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    net.fc = nn.Identity()
    net.dim = dim
    return net


class LinearNet(nn.Module):
    """The theory's first layer W, shape (n2, n1), no bias: f = W x. ``weight`` is W; ``dim`` = n2."""

    def __init__(self, n1: int, n2: int) -> None:
        super().__init__()
        self.layer = nn.Linear(n1, n2, bias=False)
        self.dim = n2

    @property
    def weight(self) -> torch.Tensor:
        return self.layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def convnet_channels(width: float | None) -> int:
    """The convnet's first-block channels at multiplier ``width`` (None: 1): round(32 ``width``)."""
    return round(CONVNET_WIDTH * (WIDTHS["convnet"] if width is None else width))


def backbone(name: str, in_channels: int, image_size: int, out_dim: int = 128, width: float | None = None,
             zero_init_residual: bool = False) -> nn.Module:
    """Build a backbone by name (``convnet``, ``resnet18``, ``resnet34``, ``resnet50``, ``resnet18-bottleneck``,
    ``resnet50-basic``, ``linear``); it has ``.dim``, the width of its features.

    ``linear`` is the theory's W from ``in_channels`` = n1 inputs to ``out_dim`` = n2 outputs. ``width``: the
    convnet's channel multiplier (:func:`convnet_channels`) or the bottleneck ResNet-18's width_per_group (None: the
    backbone's default, :data:`WIDTHS`); ``zero_init_residual`` for the ResNets.
    """
    if name == "linear":
        return LinearNet(in_channels, out_dim)
    if name == "convnet":
        return ConvNet(in_channels, convnet_channels(width))
    return resnet(name, in_channels, small_input=image_size <= 64, width=width, zero_init_residual=zero_init_residual)


PROJECTOR_STYLES = ("directpred", "unigrad", "simsiam")


def projector(in_dim: int, hidden: int = 512, out: int = 128, layers: int = 2, style: str = "directpred"
              ) -> nn.Sequential:
    """The projection head, (B, in_dim) -> (B, out): ``layers`` linear layers, ``layers - 1`` hidden blocks of width
    ``hidden`` then the output Linear(hidden, out) with bias (``layers`` = 1: one Linear(in_dim, out) with bias).

    - ``directpred`` (the DirectPred code's): hidden block Linear (with bias) -> BatchNorm1d(affine=False) -> ReLU;
      ``layers`` = 2 is the official 512 -> 128 head.
    - ``unigrad`` (UniGrad's, unigrad.md A4): hidden block Linear (no bias) -> BatchNorm1d (affine) -> ReLU;
      ``layers`` = 3, 2048 wide, is its 2048-2048-2048 head.
    - ``simsiam`` (the official SimSiam builder's, collapse.md B2): hidden blocks as ``unigrad``'s but ``in_dim``
      wide (prev_dim, the backbone's feature width; ``hidden`` is not used), then Linear(in_dim, out) without bias ->
      BatchNorm1d(out, affine=False); ``layers`` = 3 is its prev_dim-prev_dim-2048 head. (The official output Linear
      has a bias that it freezes at its init: the BN that follows subtracts it in training, and in eval mode once
      its running mean has taken it in, 1 - 0.9^t of it after t steps; it is left out.)
    """
    if style not in PROJECTOR_STYLES:
        raise ValueError(f"projector style {style!r}: expected one of {', '.join(PROJECTOR_STYLES)}")
    if layers < 1:
        raise ValueError(f"projector layers {layers}: expected at least 1")
    mods: list[nn.Module] = []
    width = in_dim
    if style == "simsiam":
        hidden = in_dim
    for _ in range(layers - 1):
        if style == "directpred":
            mods += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden, affine=False)]
        else:
            mods += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden)]
        mods.append(nn.ReLU(inplace=True))
        width = hidden
    if style == "simsiam":
        return nn.Sequential(*mods, nn.Linear(width, out, bias=False), nn.BatchNorm1d(out, affine=False))
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


class Encoder(nn.Module):
    """Backbone followed by the projector: ``forward`` gives f, the predictor's input; ``features`` the backbone's."""

    def __init__(self, backbone_net: nn.Module, proj: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone_net
        self.projector = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


BACKBONES = ("resnet18", "resnet34", "resnet50", "convnet", "linear", "resnet18-bottleneck", "resnet50-basic")
"""Every ``--backbone`` (``auto``: the dataset's, :class:`~.data.registry.DatasetSpec`)."""

declare(
    Setting("backbone", "auto", "resnet18 | resnet34 | resnet50 | convnet | linear | the collapse study's sizes: "
            "resnet18-bottleneck (ResNet-18's depth, Bottleneck blocks, --width 64|96|128) | resnet50-basic (50 "
            "layers of BasicBlocks) [auto: the dataset's: convnet for digits and the 28 px sets, linear for "
            "synthetic, resnet18 otherwise; the CIFAR stem below 64 px]", "Model", str, choices=("auto", *BACKBONES),
            resolve=lambda cfg: cfg.backbone if cfg.backbone != "auto" else DATASETS[cfg.dataset].backbone),
    Setting("width", None, "backbone width: convnet channel multiplier (1: 32-64-128 channels) | resnet18-bottleneck "
            "width_per_group [default: 1 / 64]", "Model", float | None, low=0.0, low_open=True, high=4096.0),
    Setting("zero_init_residual", False, "ResNets: the last BN of each residual block starts at 0 (torchvision's "
            "zero_init_residual; the SimSiam code's)", "Model", bool),
    Setting("proj_hidden", 512, "projector hidden width (--projector simsiam: the backbone's feature width)", "Model",
            int, paper="512", low=1, high=65536),
    Setting("proj_dim", 128, "projector output width d of F̂ and W_p", "Model", int, paper="128", low=1, high=16384),
    Setting("projector", "directpred", "projector layout: directpred (Linear+bias -> BN without affine -> ReLU, ..., "
            "Linear; the DirectPred code's) | unigrad (Linear without bias -> BN -> ReLU, ..., Linear with bias; "
            "UniGrad's 2048-2048-2048) | simsiam (hidden blocks as unigrad's, as wide as the backbone's features, then "
            "Linear -> BN without affine; the official SimSiam's prev_dim-prev_dim-2048 at --proj-layers 3)", "Model",
            str, paper="directpred", choices=PROJECTOR_STYLES),
    Setting("proj_layers", 2, "projector depth: linear layers (Table 9 of UniGrad: 3)", "Model", int, paper="2", low=1,
            high=16),
)


@rule
def _check_model(cfg: Any) -> None:
    """The backbone against the data (the linear model for the theory's data only), its width and init, the
    projector."""
    backbone = cfg.resolved_backbone
    linear_data = DATASETS[cfg.dataset].linear
    if (backbone == "linear") != linear_data:
        theirs = [n for n, s in DATASETS.items() if s.linear]
        raise ConfigError(f"--backbone {cfg.backbone} with DATASET {cfg.dataset} is not accepted: expected --backbone "
                          f"linear with {' or '.join(theirs)} (the theory's two-layer linear network) and an image "
                          f"backbone ({'|'.join(b for b in BACKBONES if b != 'linear')}) with image datasets")
    if cfg.width is not None:
        if backbone not in WIDTHS:
            raise ConfigError(f"--width {cfg.width:g} with --backbone {backbone} is not accepted: it has no width "
                              f"setting; expected no --width, or --backbone {' or '.join(WIDTHS)}")
        if backbone == "convnet" and not 1 <= convnet_channels(cfg.width) <= 2048:
            raise ConfigError(f"--width {cfg.width:g} with --backbone convnet is out of range: expected a channel "
                              "multiplier from 1/64 to 64 (32 x width channels in the first block)")
        if backbone == "resnet18-bottleneck" and not float(cfg.width).is_integer():
            raise ConfigError(f"--width {cfg.width:g} with --backbone {backbone} is not accepted: expected a whole "
                              "width_per_group (the collapse study's 64, 96, 128)")
    if cfg.zero_init_residual and not backbone.startswith("resnet"):
        raise ConfigError(f"--zero-init-residual with --backbone {backbone} is not accepted: it has no residual "
                          "blocks; expected a resnet backbone")
    if cfg.projector == "simsiam" and backbone == "linear":
        raise ConfigError("--projector simsiam with --backbone linear is not accepted: the linear model has no "
                          "projector; expected an image backbone")
    if cfg.projector == "simsiam" and cfg.proj_hidden != 512:
        raise ConfigError(f"--proj-hidden {cfg.proj_hidden} with --projector simsiam is not accepted: its hidden "
                          "width is the backbone's feature width (prev_dim); expected no --proj-hidden")
