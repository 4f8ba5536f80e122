"""Backbones (torchvision ResNets with the CIFAR stem for small inputs, a small convnet for CPU) and the projector."""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

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
