"""ResNet18/34/50 with torchvision-compatible parameter names (spec diffeo_pooling §8.2).

Convention:
    Keys: ``conv1, bn1, layer{1..4}.{i}.conv{1,2[,3]}, .bn{1,2[,3]}, .downsample.{0,1}, fc``
    as in torchvision (BasicBlock/Bottleneck v1.5: stride on the 3×3 conv; expansion 4).
    ``variant="cifar"`` (kuangliu style, diffeo-sota ``models/resnet.py``): 3×3 stem with
    stride 1, no max-pool, stages (64, 128, 256, 512) with strides (1, 2, 2, 2), then a global
    average (equal to the reference's avg_pool2d(4) for 32×32 and 28×28 inputs; it also
    accepts other sizes). ``variant="imagenet"``: 7×7/s2 stem and 3×3/s2 max-pool. Every ReLU
    is its own non-inplace module (the reference uses F.relu), named ``relu`` (stem),
    ``relu1, relu2[, relu3]`` (blocks), so hooks see each application once. The shortcut
    (``downsample`` = 1×1 conv + BN) exists where stride ≠ 1 or the width changes.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import check_positive

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "RESNET_LAYERS", "block_conv1_layers"]


class BasicBlock(nn.Module):
    """Two 3×3 convs with BN; out = relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x))."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        c_out = planes * self.expansion
        self.downsample = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        s = x if self.downsample is None else self.downsample(x)
        return self.relu2(h + s)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 (×4) convs with BN and a shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU()
        self.downsample = _shortcut(c_in, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.bn1(self.conv1(x)))
        h = self.relu2(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        s = x if self.downsample is None else self.downsample(x)
        return self.relu3(h + s)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))


RESNET_LAYERS: dict[str, tuple[type, tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet with ``block`` and ``layers`` blocks per stage; see the module Convention.

    Parameters
    ----------
    arch : str
        A key of ``RESNET_LAYERS`` ("resnet18", "resnet34", "resnet50", "resnet101").
    variant : {"cifar", "imagenet"}
    in_channels, input_size, num_classes : int

    Raises
    ------
    ValueError
        Unknown arch/variant, or an input too small for the stem (imagenet variant).
    """

    def __init__(self, arch: str = "resnet18", *, variant: str = "cifar", in_channels: int = 3,
                 input_size: int = 32, num_classes: int = 10):
        super().__init__()
        check_positive(in_channels=in_channels, input_size=input_size, num_classes=num_classes)
        if arch not in RESNET_LAYERS:
            raise ValueError(f"arch must be one of {sorted(RESNET_LAYERS)}, got {arch!r}")
        if variant not in ("cifar", "imagenet"):
            raise ValueError(f"variant must be 'cifar' or 'imagenet', got {variant!r}")
        if variant == "imagenet" and input_size < 32:
            raise ValueError(f"input_size={input_size}: too small for the imagenet stem (needs >= 32)")
        block, counts = RESNET_LAYERS[arch]
        if variant == "cifar":
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if variant == "imagenet" else nn.Identity()
        c = 64
        for i, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), counts, (1, 2, 2, 2))):
            blocks = []
            for j in range(n):
                blocks.append(block(c, planes, stride if j == 0 else 1))
                c = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, s, s)
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))  # (B, 512·e, s/8, s/8)
        return self.fc(self.flatten(self.avgpool(h)))  # (B, num_classes)


def block_conv1_layers(model: nn.Module) -> list[str]:
    """``named_modules()`` names of the ``conv1`` of every residual block, in order.

    The layers the CNFA reference measures on ResNets (convrfm
    ``cnfa_verification/pretrained_conv_nfa.py`` patches only block conv1; the stem conv, the
    blocks' other convs and the downsample convs are not measured).
    """
    return [f"{name}.conv1" for name, m in model.named_modules() if isinstance(m, (BasicBlock, Bottleneck))]
