"""AlexNet, CIFAR variant of diffeo-sota ``models/alexnet.py`` (spec diffeo_pooling §8.2).

Convention:
    ``features``: [ZeroPad2d(2) for a 1-channel 28×28 input, as the reference pads MNIST] conv3/s2 (→64) ReLU mp2, conv3 (→192) ReLU mp2,
    conv3 (→384) ReLU, conv3 (→256) ReLU, conv3 (→256) ReLU mp2. ``classifier``: Dropout,
    Linear(flat→4096), ReLU, Dropout, Linear(4096→4096), ReLU, Linear(4096→classes).
    flat = 256·2·2 for 32×32 (computed from input_size). ReLUs in place, as the reference.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import check_positive, feature_shape, pad_1ch_default

__all__ = ["AlexNet"]


class AlexNet(nn.Module):
    """CIFAR AlexNet; ``pad_1ch`` (default: ``in_channels == 1 and input_size == 28``) prepends
    ZeroPad2d(2)."""

    def __init__(self, *, in_channels: int = 3, input_size: int = 32, num_classes: int = 10,
                 pad_1ch: bool | None = None, hidden: int = 4096):
        super().__init__()
        check_positive(in_channels=in_channels, input_size=input_size, num_classes=num_classes,
                       hidden=hidden)
        layers: list[nn.Module] = []
        if pad_1ch_default(in_channels, input_size) if pad_1ch is None else pad_1ch:
            layers.append(nn.ZeroPad2d(2))
        layers += [
            nn.Conv2d(in_channels, 64, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2),
            nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2),
        ]
        self.features = nn.Sequential(*layers)
        C, H, W = feature_shape(self.features, in_channels, input_size, "alexnet")
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(C * H * W, hidden), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))  # (B, num_classes)
