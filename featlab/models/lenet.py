"""LeNet-5 (CIFAR variant of diffeo-sota ``models/lenet.py``), with hookable ReLU/pool modules.

Convention:
    conv1 5×5 (C→6) → ReLU → maxpool2 → conv2 5×5 (6→16) → ReLU → maxpool2 → flatten →
    fc1 (→120) → ReLU → fc2 (→84) → ReLU → fc3. Parameter names ``conv1, conv2, fc1, fc2,
    fc3`` match the reference; fc1's input is 16·s₂² with s₂ = ((s−4)//2 − 4)//2 (5 for 32×32,
    4 for 28×28). PyTorch default init; ReLUs are not in place (the reference uses F.relu).
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import check_positive

__all__ = ["LeNet"]


class LeNet(nn.Module):
    """LeNet-5 for ``(B, in_channels, input_size, input_size)`` inputs.

    Raises
    ------
    ValueError
        If ``input_size < 16`` (the second 5×5 conv would have no valid position).
    """

    def __init__(self, *, in_channels: int = 3, input_size: int = 32, num_classes: int = 10):
        super().__init__()
        check_positive(in_channels=in_channels, input_size=input_size, num_classes=num_classes)
        s2 = ((input_size - 4) // 2 - 4) // 2
        if s2 < 1:
            raise ValueError(f"input_size={input_size}: too small for lenet (needs >= 16)")
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * s2 * s2, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool1(self.relu1(self.conv1(x)))  # (B, 6, s1, s1)
        h = self.pool2(self.relu2(self.conv2(h)))  # (B, 16, s2, s2)
        h = self.relu3(self.fc1(self.flatten(h)))
        h = self.relu4(self.fc2(h))
        return self.fc3(h)  # (B, num_classes)
