"""Simple CNNs of the scale-detection experiments (spec diffeo_pooling §6.3).

    block k:  h ← gain·σ( conv(pad(h), W_k/√(C_in·F^dim), b_k, stride_k) )      gain = √F
    readout:  out = (b_f + h̄·β/H)·α̃                                          h̄ = spatial mean

W, b, β, b_f ~ N(0, 1). The per-block outputs (after gain·σ) are the modules ``blocks.k``, so
probes address them by module path.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as Fn
from torch import nn

__all__ = ["SimpleCNN", "circular_padding"]


def circular_padding(F: int) -> tuple[int, int]:
    """(left, right) padding widths: ((F−1)/2, (F−1)/2) for odd F, (F/2 − 1, F/2) for even F."""
    return ((F - 1) // 2, (F - 1) // 2) if F % 2 else (F // 2 - 1, F // 2)


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


class ConvBlock(nn.Module):
    """One block: pad, conv with weight W/√(C_in·F^dim) (ntk) or W (standard), then gain·σ."""

    def __init__(self, dim: int, c_in: int, c_out: int, F: int, stride: int, padding: str,
                 activation: str, scaling: str, gain: float):
        super().__init__()
        self.dim, self.F, self.stride, self.padding, self.scaling, self.gain = dim, F, stride, padding, scaling, gain
        self.activation = activation
        fan_in = c_in * F ** dim
        self.norm = 1 / math.sqrt(fan_in) if scaling == "ntk" else 1.0
        init_std = 1.0 if scaling == "ntk" else 1 / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, *([F] * dim)) * init_std)
        self.bias = nn.Parameter(torch.randn(c_out))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        left, right = circular_padding(self.F)
        pad = (left, right) * self.dim
        mode = "circular" if self.padding == "circular" else "constant"
        h = Fn.pad(h, pad, mode=mode)
        conv = Fn.conv1d if self.dim == 1 else Fn.conv2d
        z = conv(h, self.weight * self.norm, self.bias, stride=self.stride)  # (B, C_out, L')
        act = torch.relu(z) if self.activation == "relu" else torch.tanh(z)
        return self.gain * act


class GAPReadout(nn.Module):
    """out = (b_f + h̄·β/H)·α̃ with h̄ the spatial mean of the last block (B, H)."""

    def __init__(self, H: int, out_dim: int, alpha: float, scaling: str):
        super().__init__()
        self.H, self.alpha, self.scaling = H, alpha, scaling
        self.norm = 1 / H if scaling == "ntk" else 1.0
        self.beta = nn.Parameter(torch.randn(H, out_dim) * (1.0 if scaling == "ntk" else 1 / H))
        self.bias = nn.Parameter(torch.randn(out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        hbar = h.flatten(2).mean(-1)  # (B, H)
        return (self.bias + hbar @ self.beta * self.norm) * self.alpha  # (B, out)


class SimpleCNN(nn.Module):
    """Deep CNN with filter size F, optional strides, circular padding and a GAP readout.

    Parameters
    ----------
    dim : 1 or 2
        Input (B, C, L) or (B, C, L, L).
    F : int
        Filter size.
    stride_layers : "all" | "first" | "none"
        Which blocks have stride ``stride``: every block (the intended "with stride" net),
        block 0 only (the published 1D script, whose ``idx_strides`` never matches), or none.
    depth, width : int
        Number of blocks and channels H per block.
    padding : "circular" | "zeros"
        Padding widths from :func:`circular_padding` (zeros: same widths, zero fill).
    activation : "relu" | "tanh"
    scaling : "ntk" | "standard"
        ntk: parameters N(0, 1), forward uses W/√(C_in·F^dim) and β/H. standard: the same
        factors are folded into the initialisation (same function at init, different
        gradient scales).
    alpha : float
        Output multiplier α̃ (the loss of the reference is (1/α̃)·relu(1 − y·o)).
    gain : float or None
        Post-activation factor; None -> √F (reference 1D net).
    in_channels, out_dim : int

    Convention:
        Block k's output (after gain·σ) is the module ``blocks.k``; the readout is ``readout``.
        With padding (F−1) in total, a block of stride s maps length L to ⌊(L − 1)/s⌋ + 1, so
        with F = s = 2 and ``stride_layers="all"`` block k has length L/2^(k+1). Output
        (B, out_dim) = (b_f + h̄·β/H)·α̃.
    """

    def __init__(self, dim: int = 1, F: int = 2, stride_layers: str = "all", depth: int = 7,
                 width: int = 1000, padding: str = "circular", activation: str = "relu",
                 scaling: str = "ntk", readout: str = "gap", alpha: float = 1.0, stride: int = 2,
                 gain: float | None = None, in_channels: int = 1, out_dim: int = 1):
        super().__init__()
        _check("dim", dim, (1, 2))
        _check("stride_layers", stride_layers, ("all", "first", "none"))
        _check("padding", padding, ("circular", "zeros"))
        _check("activation", activation, ("relu", "tanh"))
        _check("scaling", scaling, ("ntk", "standard"))
        _check("readout", readout, ("gap",))
        for k, v in dict(F=F, depth=depth, width=width, stride=stride, in_channels=in_channels,
                         out_dim=out_dim).items():
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        self.dim, self.F, self.depth, self.width = dim, F, depth, width
        self.strides = [stride if (stride_layers == "all" or (stride_layers == "first" and k == 0)) else 1
                        for k in range(depth)]
        g = math.sqrt(F) if gain is None else gain
        self.blocks = nn.Sequential(*[
            ConvBlock(dim, in_channels if k == 0 else width, width, F, self.strides[k], padding,
                      activation, scaling, g) for k in range(depth)])
        self.readout = GAPReadout(width, out_dim, alpha, scaling)

    @property
    def block_names(self) -> list[str]:
        """Module paths of the block outputs, ``["blocks.0", ...]``."""
        return [f"blocks.{k}" for k in range(self.depth)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.blocks(x))
