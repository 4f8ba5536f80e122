"""Backbones (torchvision ResNets with the CIFAR stem for small inputs, a small convnet for CPU) and the projector."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


class ConvNet(nn.Module):
    """A small CPU-friendly backbone: three conv-BN-ReLU blocks and global average pooling; ``dim`` = 128."""

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()

        def block(i: int, o: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.net = nn.Sequential(*block(in_channels, width, 1), *block(width, 2 * width, 2),
                                 *block(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def resnet(name: str, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    """torchvision ResNet-18/34/50 without its classifier (``fc`` = Identity; ``.dim`` = 512 or 2048).

    ``small_input`` (inputs <= 64 px) swaps the stem for a 3x3 stride-1 conv and removes the max-pool (the CIFAR
    stem of the official code); ``in_channels`` other than 3 replaces the first conv.
    """
    net = getattr(torchvision.models, name)(weights=None)
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


def backbone(name: str, in_channels: int, image_size: int, out_dim: int = 128) -> nn.Module:
    """Build a backbone by name (``convnet``, ``resnet18``, ``resnet34``, ``resnet50``, ``linear``); it has ``.dim``.

    ``linear`` is the theory's W from ``in_channels`` = n1 inputs to ``out_dim`` = n2 outputs.
    """
    if name == "linear":
        return LinearNet(in_channels, out_dim)
    if name == "convnet":
        return ConvNet(in_channels)
    return resnet(name, in_channels, small_input=image_size <= 64)


PROJECTOR_STYLES = ("directpred", "unigrad")


def projector(in_dim: int, hidden: int = 512, out: int = 128, layers: int = 2, style: str = "directpred"
              ) -> nn.Sequential:
    """The projection head, (B, in_dim) -> (B, out): ``layers`` linear layers, ``layers - 1`` hidden blocks of width
    ``hidden`` then the output Linear(hidden, out) with bias (``layers`` = 1: one Linear(in_dim, out) with bias).

    - ``directpred`` (the DirectPred code's): hidden block Linear (with bias) -> BatchNorm1d(affine=False) -> ReLU;
      ``layers`` = 2 is the official 512 -> 128 head.
    - ``unigrad`` (UniGrad's, unigrad.md A4): hidden block Linear (no bias) -> BatchNorm1d (affine) -> ReLU;
      ``layers`` = 3, 2048 wide, is its 2048-2048-2048 head.
    """
    if style not in PROJECTOR_STYLES:
        raise ValueError(f"projector style {style!r}: expected one of {', '.join(PROJECTOR_STYLES)}")
    if layers < 1:
        raise ValueError(f"projector layers {layers}: expected at least 1")
    mods: list[nn.Module] = []
    width = in_dim
    for _ in range(layers - 1):
        if style == "directpred":
            mods += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden, affine=False)]
        else:
            mods += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden)]
        mods.append(nn.ReLU(inplace=True))
        width = hidden
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
