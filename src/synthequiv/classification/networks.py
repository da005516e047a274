"""Classifier networks, chosen by image size: SmallCNN (8–16 px), a CIFAR-stem ResNet-18
(17–64 px), torchvision's ImageNet-layout ResNet-18 (> 64 px) and an airbench94-style net for
32 px natural images. Each has `.features(x) → [N, D]` (the analyses' feature space) and
`forward(x) → logits [N, num_classes]`; inputs are float in [-1, 1]."""

from __future__ import annotations

import math

import torch
from torch import nn

from synthequiv.classification.config import ARCHS
from synthequiv.utils import SynthequivError, check_positive


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A 3×3 conv stem at full resolution, then stages of [2×2 max-pool, two 3×3 convs] that
    halve the size down to 4 px and double the width, then a global max-pool and a linear head.

    8 px: stem 8 px (w) → 4 px (2w); 16 px: 16 (w) → 8 (2w) → 4 px (4w). features → [N, D].
    Only the stem runs at full size, which keeps a 400-step digits cell at ~3 s on one CPU core.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int, width: int = 16):
        super().__init__()
        layers, c = [_conv_bn(in_channels, width)], width
        size = image_size
        while size > 4:  # each stage: pool, then two convs at double width
            size = math.ceil(size / 2)
            layers += [nn.MaxPool2d(2, ceil_mode=True), _conv_bn(c, 2 * c), _conv_bn(2 * c, 2 * c)]
            c *= 2
        self.body = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c, num_classes)
        self.feature_dim = c

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # [N, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # [N, K]


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's module names (state_dicts interchange at width 64).

    stem="cifar": 3×3 stride-1 conv, no max-pool — for 28–64 px (32 px: 32→32→16→8→4).
    stem="imagenet": torchvision's 7×7 stride-2 conv + max-pool — for larger images.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, stem: str = "cifar"):
        super().__init__()
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1, self.relu = nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        self.inplanes = width
        self.layer1 = self._make_layer(width, 1)
        self.layer2 = self._make_layer(width * 2, 2)
        self.layer3 = self._make_layer(width * 4, 2)
        self.layer4 = self._make_layer(width * 8, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 8, num_classes)
        self.feature_dim = width * 8
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes:
            down = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        # imported here: torchvision.models pulls in torch._dynamo (~0.9 s of every process
        # start, worker processes included), which SmallCNN-only runs never need
        from torchvision.models.resnet import BasicBlock

        blocks = [BasicBlock(self.inplanes, planes, stride, down), BasicBlock(planes, planes)]
        self.inplanes = planes
        return nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)  # [N, 8·width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # [N, K]


class AirbenchNet(nn.Module):
    """airbench94's network (Jordan 2024, github.com/KellerJordan/cifar10-airbench) for ~32 px
    natural images: a 2×2 stem conv (no padding), then three blocks [3×3 conv, 2×2 max-pool,
    BN, GELU, 3×3 conv, BN, GELU] at widths w, 4w, 4w, a global max-pool and a bias-free linear
    head scaled by 1/9. 32 px: 31 → 15 → 7 → 3 px. ~2M parameters at w = 64.

    Differences from airbench94 (which reaches 94 % on CIFAR-10 in ~10 epochs): the stem is
    learnt, not initialised by patch whitening; BN uses torch defaults; no lookahead/TTA. Its
    accuracy under this package's recipe is unmeasured here (no CIFAR-10 offline): see README.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        stem = 2 * in_channels * 2 * 2  # airbench: 24 channels for RGB

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
                    nn.BatchNorm2d(c_out), nn.GELU(),
                    nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                    nn.GELU()]

        self.body = nn.Sequential(
            nn.Conv2d(in_channels, stem, 2, bias=True), nn.GELU(),
            *block(stem, width), *block(width, 4 * width), *block(4 * width, 4 * width),
            nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4 * width, num_classes, bias=False)
        self.feature_dim = 4 * width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # [N, 4·width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x)) / 9.0  # [N, K]; airbench's logit scale


def resolve_arch(arch: str, image_size: int) -> str:
    """'auto' → smallcnn up to 16 px, CIFAR-style resnet18 up to 64 px, else the ImageNet one."""
    if arch not in ARCHS:
        raise SynthequivError(f"unknown classifier arch '{arch}' (use {', '.join(ARCHS)})")
    if arch != "auto":
        return arch
    return "smallcnn" if image_size <= 16 else "resnet18" if image_size <= 64 else (
        "torchvision-resnet18")


def build_classifier(
    arch: str, in_channels: int, image_size: int, num_classes: int, width: int = 0
) -> nn.Module:
    """A fresh classifier; `.features(x) → [N, D]`, `forward(x) → logits [N, num_classes]`."""
    check_positive("in_channels", in_channels)
    check_positive("image_size", image_size)
    check_positive("num_classes", num_classes)
    check_positive("width", width, allow_zero=True)
    arch = resolve_arch(arch, image_size)
    if arch == "smallcnn":
        return SmallCNN(in_channels, image_size, num_classes, width or 16)
    if arch == "airbench":
        if image_size < 16:  # 2×2 stem + three 2× pools: 15 px → 1 px at the head
            raise SynthequivError(f"classifier arch 'airbench' needs images ≥ 16 px, got "
                                  f"{image_size} px (use smallcnn)")
        return AirbenchNet(in_channels, num_classes, width or 64)
    stem = "cifar" if arch == "resnet18" else "imagenet"
    return ResNet18(in_channels, num_classes, width or 64, stem)
