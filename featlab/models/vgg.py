"""VGG11/13/16/19 (± BatchNorm) with torchvision-compatible parameter names (spec §8.2).

Convention:
    ``features`` is one ``nn.Sequential`` of 3×3 convs (padding 1), [BatchNorm2d], ReLU(in
    place) and MaxPool2d(2, 2) in the cfg order, so keys read ``features.N.weight`` exactly as
    in torchvision. ``variant="cifar"`` (diffeo-sota ``models/vgg.py``): a 1-channel 28×28 input
    (MNIST, the reference's only 1-channel size) gets a leading ZeroPad2d(2) to 32×32 (this shifts
    every index by one, as in the reference; other sizes are not padded unless ``pad_1ch=True``;
    the pad is an input transform, not a layer, and probes leave it out), ``features``
    ends with an identity AvgPool2d(1, 1) (the reference's node ``features.29`` of VGG11-BN),
    and ``classifier`` is a single Linear(512·h·w → classes), h = w = 1 at 32×32.
    ``variant="imagenet"`` is torchvision's layout: ``avgpool`` AdaptiveAvgPool2d(7) and
    ``classifier`` = [Linear(25088, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
    Linear(4096, classes)], so an ImageNet state dict loads with ``load_state_dict_file``.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import check_positive, feature_shape, pad_1ch_default as _pad_default

__all__ = ["VGG", "VGG_CFGS"]

VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG network from a cfg list (ints: conv widths, "M": 2×2 max-pool).

    Parameters
    ----------
    cfg : str or list
        A key of ``VGG_CFGS`` ("vgg11", ...) or an explicit list.
    batch_norm : bool
        BatchNorm2d after every conv (the ``*_bn`` nets).
    variant : {"cifar", "imagenet"}
        Head layout, see the module docstring.
    pad_1ch : bool or None
        Leading ZeroPad2d(2); default ``in_channels == 1 and input_size == 28`` in the cifar
        variant (28→32).
    in_channels, input_size, num_classes : int

    Raises
    ------
    ValueError
        Unknown cfg/variant, or ``input_size`` too small for five 2× poolings.
    """

    def __init__(self, cfg: str | list = "vgg11", *, batch_norm: bool = False, variant: str = "cifar",
                 in_channels: int = 3, input_size: int = 32, num_classes: int = 10,
                 pad_1ch: bool | None = None):
        super().__init__()
        check_positive(in_channels=in_channels, input_size=input_size, num_classes=num_classes)
        if variant not in ("cifar", "imagenet"):
            raise ValueError(f"variant must be 'cifar' or 'imagenet', got {variant!r}")
        if isinstance(cfg, str):
            if cfg not in VGG_CFGS:
                raise ValueError(f"cfg must be one of {sorted(VGG_CFGS)} or a list, got {cfg!r}")
            cfg = VGG_CFGS[cfg]
        self.variant = variant
        layers: list[nn.Module] = []
        if variant == "cifar" and (_pad_default(in_channels, input_size) if pad_1ch is None else pad_1ch):
            layers.append(nn.ZeroPad2d(2))
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(nn.Conv2d(c, int(v), kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(int(v)))
                layers.append(nn.ReLU(inplace=True))
                c = int(v)
        if variant == "cifar":
            layers.append(nn.AvgPool2d(kernel_size=1, stride=1))  # identity; reference node name
        self.features = nn.Sequential(*layers)
        C, H, W = feature_shape(self.features, in_channels, input_size, "vgg")
        self.flatten = nn.Flatten()
        if variant == "cifar":
            self.classifier = nn.Linear(C * H * W, num_classes)
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(C * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(4096, num_classes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, C, h, w)
        if self.variant == "imagenet":
            h = self.avgpool(h)  # (B, C, 7, 7)
        return self.classifier(self.flatten(h))  # (B, num_classes)
