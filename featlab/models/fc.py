"""Fully connected ``DenseNetL*`` nets of [N21]/[I23] with their N(0, 1) init and 1/√d scaling.

Convention:
    Input ``(B, C, H, W)`` is flattened row-major to ``(B, d)``, d = C·H·W. Hidden layer
    ℓ computes ``y = x @ W.T / sqrt(d_ℓ) + b`` with W, b ~ N(0, 1) (``weight`` stored
    ``(out, in)`` like ``nn.Linear``); the readout computes ``x @ W.T / d_L`` (mean-field
    1/d, no bias unless ``last_bias=True``). "fcL" has L hidden layers (spec diffeo_pooling
    §8.1; reference diffeo-sota ``models/fcc.py``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as Fn
from torch import nn

from ._common import check_positive

__all__ = ["ScaledLinear", "FCNet"]


class ScaledLinear(nn.Linear):
    """``nn.Linear`` with N(0, 1) weights/bias and the weight scaled by ``scale`` in forward.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    scale : float
        Multiplies the weight in the forward pass: ``y = x @ (scale·W).T + b``.
        1/√d for hidden layers, 1/d for the readout.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, scale: float = 1.0):
        self.scale = float(scale)
        super().__init__(in_features, out_features, bias=bias)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.normal_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Fn.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scale={self.scale:.4g}"


class FCNet(nn.Module):
    """Fully connected ReLU net ``DenseNetL{depth}``: ``features`` (hidden) then ``classifier``.

    Parameters
    ----------
    depth : int
        Number of hidden layers L (fc2, fc4, fc6 have L = 2, 4, 6).
    in_channels, input_size : int
        Input is ``(B, in_channels, input_size, input_size)``; d = in_channels·input_size².
    num_classes : int
        Output units (1 for hinge loss).
    width : int
        Hidden width h (64 in the reference).
    last_bias : bool
        Add an N(0, 1) bias to the readout (default False: readout is ``x @ W.T / h``).

    Convention:
        See the module docstring: W, b ~ N(0, 1), hidden ``x@W.T/√d + b``, readout ``x@W.T/h``.
        For a fixed input x, q₁ = |x|²/d + 1, q_{ℓ+1} = q_ℓ/2 + 1 and E[out²] = q_L/(2h)
        (exact in expectation over the init; ReLU halves the second moment by symmetry).
    """

    def __init__(self, depth: int = 4, *, in_channels: int = 3, input_size: int = 32,
                 num_classes: int = 10, width: int = 64, last_bias: bool = False):
        super().__init__()
        check_positive(depth=depth, in_channels=in_channels, input_size=input_size,
                       num_classes=num_classes, width=width)
        d = in_channels * input_size * input_size
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(depth):
            layers += [ScaledLinear(d, width, scale=1.0 / math.sqrt(d)), nn.ReLU()]
            d = width
        self.features = nn.Sequential(*layers)
        self.classifier = ScaledLinear(d, num_classes, bias=last_bias, scale=1.0 / d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (B, num_classes)
