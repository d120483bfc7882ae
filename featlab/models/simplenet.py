"""The follow-up networks of Lufkin, Saxe & Grant (spec emergence §4.3): ``SimpleNet`` and ``MLP``.

    SimpleNet:  ŷ = (1/K) Σ_k σ(w_k·x + b_k)          # no 1/√D; only w (and b) trained
    MLP:        ŷ = (1/K) Σ_k a_k σ(w_k·x + b_k)      # a trained, initialised at 1 + noise

Init: w is Xavier-normal (std √(2/(D + K))) times √init_scale. Targets are y ∈ {0, 1} (y = 1
for the class with the larger ξ) and the loss is (ŷ − y)² without ½.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SimpleNet", "MLP", "FOLLOWUP_ACTIVATIONS"]

FOLLOWUP_ACTIVATIONS = ("relu", "sigmoid")


def _act(name: str):
    if name == "relu":
        return torch.relu
    if name == "sigmoid":
        return torch.sigmoid
    raise ValueError(f"activation: allowed {', '.join(FOLLOWUP_ACTIVATIONS)} (got {name!r})")


class SimpleNet(nn.Module):
    """ŷ = (1/K) Σ_k σ(w_k·x + b_k) with a fixed unit readout (LSG ``SimpleNet``).

    Parameters
    ----------
    D, K : int
        Input dimension and number of hidden units.
    activation : {"relu", "sigmoid"}
    bias : bool
        Trainable bias, initialised at 0.
    init_scale : float
        w ~ Xavier-normal × √init_scale, i.e. N(0, 2·init_scale/(D + K)).
    generator : torch.Generator, optional
    dtype : torch.dtype

    Convention:
        x: (n, D), 2D inputs flattened row-major; returns ŷ: (n,). No 1/√D in the
        pre-activation (unlike :class:`~featlab.models.committee.TwoLayer`).
    """

    def __init__(self, D: int, K: int = 1, *, activation: str = "relu", bias: bool = False,
                 init_scale: float = 1e-3, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if D < 1 or K < 1:
            raise ValueError(f"D, K: must be >= 1 (got D={D}, K={K})")
        if init_scale <= 0:
            raise ValueError(f"init_scale: must be > 0 (got {init_scale})")
        _act(activation)
        self.D, self.K, self.act = D, K, activation
        dev = generator.device if generator is not None else None
        std = math.sqrt(2.0 / (D + K)) * math.sqrt(init_scale)
        self.w = nn.Parameter(std * torch.randn(K, D, generator=generator, device=dev, dtype=dtype))
        if bias:
            self.b = nn.Parameter(torch.zeros(K, dtype=dtype, device=dev))
        else:
            self.register_buffer("b", torch.zeros(K, dtype=dtype, device=dev))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """σ(x wᵀ + b), shape (n, K)."""
        x = x.reshape(x.shape[0], -1)
        return _act(self.act)(x @ self.w.T + self.b)  # (n, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x).mean(dim=1)  # (n,)


class MLP(SimpleNet):
    """:class:`SimpleNet` with a trainable readout a_k initialised at 1 + N(0, readout_noise²).

    Convention:
        ŷ = (1/K) Σ_k a_k σ(w_k·x + b_k), shape (n,).
    """

    def __init__(self, D: int, K: int = 1, *, activation: str = "relu", bias: bool = False,
                 init_scale: float = 1e-3, readout_noise: float = 0.01,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        super().__init__(D, K, activation=activation, bias=bias, init_scale=init_scale,
                         generator=generator, dtype=dtype)
        dev = generator.device if generator is not None else None
        self.a = nn.Parameter(1.0 + readout_noise * torch.randn(K, generator=generator, device=dev,
                                                                  dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(x) @ self.a / self.K  # (n,)
