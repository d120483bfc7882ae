"""The plain "Vanilla" CNN baseline of the AGOP paper (agop_rfm §9, reference ``conv_nets``).

Convention:
    ``features`` = depth × [Conv2d(k×k, width, stride, padding, bias) → ReLU (→ 2×2 pool)],
    then ``classifier`` = Flatten → Linear(no bias). Layer names: the i-th conv is
    ``features.{2i}`` without pooling, ``features.{3i}`` with pooling. PyTorch default init.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import check_positive, feature_shape, image_hw

__all__ = ["VanillaCNN"]


class VanillaCNN(nn.Module):
    """``depth`` × [conv → ReLU] → flatten → linear readout without bias.

    Parameters
    ----------
    depth, width, kernel_size, stride : int
        Number of conv layers, channels per layer, kernel size q, stride s.
    padding : int
        Zero padding of every conv (reference: 0 or 1).
    bias : bool
        Conv biases (reference: False).
    pool : {None, "max", "avg"}
        Optional 2×2/stride-2 pooling after each block ([design] option; default None).
    in_channels, num_classes : int
    input_size : int or (int, int)
        Square side, or ``(H, W)`` for rectangular images.

    Raises
    ------
    ValueError
        If the feature map becomes empty for ``input_size`` (too many pooling/stride steps).
    """

    def __init__(self, depth: int = 4, width: int = 64, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, bias: bool = False, pool: str | None = None, *,
                 in_channels: int = 3, input_size: int | tuple[int, int] = 32, num_classes: int = 10):
        super().__init__()
        check_positive(depth=depth, width=width, kernel_size=kernel_size, stride=stride,
                       in_channels=in_channels, num_classes=num_classes)
        image_hw(input_size)
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        if pool not in (None, "max", "avg"):
            raise ValueError(f"pool must be None, 'max' or 'avg', got {pool!r}")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, kernel_size, stride=stride, padding=padding, bias=bias),
                       nn.ReLU()]
            if pool is not None:
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
            c = width
        self.features = nn.Sequential(*layers)
        C, H, W = feature_shape(self.features, in_channels, input_size, "vanilla")
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, num_classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, num_classes)
