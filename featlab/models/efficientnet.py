"""EfficientNet-B0, CIFAR variant (kuangliu style as in diffeo-sota ``models/efficientnet.py``).

Convention:
    Stem: 3×3 conv (→32, stride 1, no bias) + BN + swish. Seven stages of MBConv blocks
    (expansion, channels, kernel, stride, repeats) = (1,16,3,1,1), (6,24,3,2,2), (6,40,5,2,2),
    (6,80,3,2,3), (6,112,5,1,3), (6,192,5,2,4), (6,320,3,1,1). Each block: [1×1 expand + BN +
    swish] → k×k depthwise (stride) + BN + swish → squeeze-excitation (ratio 0.25 of the block
    *input* channels) → 1×1 project + BN; identity skip when stride 1 and widths match, with
    drop-connect rate 0.2·i/16 for block i in training. Head: global average, Dropout(0.2),
    ``linear`` (320 → classes). No 1280-wide head conv (as the reference). PyTorch default init.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import check_positive

__all__ = ["EfficientNet", "MBConv"]

_B0 = ((1, 16, 3, 1, 1), (6, 24, 3, 2, 2), (6, 40, 5, 2, 2), (6, 80, 3, 2, 3), (6, 112, 5, 1, 3),
       (6, 192, 5, 2, 4), (6, 320, 3, 1, 1))


class MBConv(nn.Module):
    """Inverted-residual block with squeeze-excitation; see the module Convention."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, expansion: int,
                 se_ratio: float = 0.25, drop_rate: float = 0.0):
        super().__init__()
        c = expansion * c_in
        self.expansion, self.drop_rate = expansion, drop_rate
        self.skip = stride == 1 and c_in == c_out
        if expansion != 1:
            self.conv1 = nn.Conv2d(c_in, c, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.act1 = nn.SiLU()
        self.conv2 = nn.Conv2d(c, c, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                               groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.act2 = nn.SiLU()
        s = max(1, int(c_in * se_ratio))
        self.se1 = nn.Conv2d(c, s, 1)
        self.se_act = nn.SiLU()
        self.se2 = nn.Conv2d(s, c, 1)
        self.conv3 = nn.Conv2d(c, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.expansion == 1 else self.act1(self.bn1(self.conv1(x)))
        h = self.act2(self.bn2(self.conv2(h)))  # (B, c, s', s')
        w = torch.sigmoid(self.se2(self.se_act(self.se1(h.mean(dim=(2, 3), keepdim=True)))))  # (B, c, 1, 1)
        h = self.bn3(self.conv3(h * w))
        if not self.skip:
            return h
        if self.training and self.drop_rate > 0:  # drop-connect: per-sample keep mask
            keep = 1.0 - self.drop_rate
            mask = torch.empty(h.shape[0], 1, 1, 1, device=h.device, dtype=h.dtype).bernoulli_(keep)
            h = h / keep * mask
        return h + x


class EfficientNet(nn.Module):
    """EfficientNet-B0 for CIFAR-sized inputs (stem stride 1); see the module Convention.

    Parameters
    ----------
    in_channels, input_size, num_classes : int
    dropout, drop_connect : float
        Head dropout and the maximal drop-connect rate (0.2 each in the reference).
    """

    def __init__(self, *, in_channels: int = 3, input_size: int = 32, num_classes: int = 10,
                 dropout: float = 0.2, drop_connect: float = 0.2):
        super().__init__()
        check_positive(in_channels=in_channels, input_size=input_size, num_classes=num_classes)
        if input_size < 16:
            raise ValueError(f"input_size={input_size}: too small for efficientnet_b0 (needs >= 16)")
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act1 = nn.SiLU()
        total = sum(r for *_, r in _B0)
        blocks, c, i = [], 32, 0
        for expansion, c_out, k, stride, repeats in _B0:
            for j in range(repeats):
                blocks.append(MBConv(c, c_out, k, stride if j == 0 else 1, expansion,
                                     drop_rate=drop_connect * i / total))
                c, i = c_out, i + 1
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.act1(self.bn1(self.conv1(x))))  # (B, 320, s/16, s/16)
        return self.linear(self.dropout(self.flatten(self.avgpool(h))))  # (B, num_classes)
