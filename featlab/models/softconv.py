"""The CNNs of the original emergence code (spec emergence.md §4.2): ``SoftConv`` and ``ConvTwoLayer``.

    SoftConv:      h = g(conv_circular(x; filters (banks, k), bias)),  y = A . flatten(h)
    ConvTwoLayer:  h = maxpool_2(sigma(conv_valid(x; K filters of size k))),
                   s = sum(h) / num_hidden,  outputs [s, -s]

Reference: sgoldt/conv_emerge ``network.py`` (classes ``Convolutional`` and ``ConvTwoLayer``).
Fixed there and here without a flag (they only crash): ``ConvTwoLayer`` counted H_out^2
hidden units even in 1D and mis-counted odd H_out (num_hidden now comes from the actual pooled
shape), and kept ``fc2`` as a plain tensor that ``.to()`` did not move (now a buffer).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as Fn
from torch import nn

__all__ = ["SoftConv", "ConvTwoLayer", "CONV_ACTIVATIONS"]

CONV_ACTIVATIONS = ("tanh", "erf", "relu")


def _activation(name: str):
    if name == "tanh":
        return torch.tanh
    if name == "erf":
        return lambda h: torch.special.erf(h / math.sqrt(2.0))  # the reference's "erf"
    if name == "relu":
        return torch.relu
    raise ValueError(f"activation: allowed {', '.join(CONV_ACTIVATIONS)} (got {name!r})")


def _as_image(x: torch.Tensor, L: int, dim: int) -> torch.Tensor:
    """(n, D) / (n, L) / (n, L, L) -> (n, 1, L) or (n, 1, L, L), row-major."""
    n = x.shape[0]
    return x.reshape(n, 1, L) if dim == 1 else x.reshape(n, 1, L, L)


class SoftConv(nn.Module):
    """Soft convolutional network (the reference's ``Convolutional``).

    Parameters
    ----------
    L : int
        Linear input size; N = L^dim positions.
    dim : {1, 2}
    k : int
        Odd filter size (k x k in 2D); circular padding (k - 1)/2 keeps N outputs per bank.
    banks : int
        Number of filters ("num_banks").
    activation : {"tanh", "erf", "relu"}
        g; the reference class default is tanh (the paper's choice is [paper?]).
    soft : bool
        True: readout fixed at 1/sqrt(nl), nl = N * banks (a buffer, not trained). False:
        trainable, init N(0, 1/nl).
    num_out : int
        Outputs; 1 gives forward (n,), more give (n, num_out).
    init_bias_zero : bool
        Zero conv bias instead of PyTorch's default uniform init.
    generator : torch.Generator, optional
        For every initialisation (filters use PyTorch's default kaiming-uniform law, drawn here
        from ``generator``).

    Convention:
        x: (n, D), (n, L) or (n, L, L), flattened row-major; hidden map h: (n, banks, L) or
        (n, banks, L, L), position p of bank f sees x[p - (k-1)/2 : p + (k-1)/2 + 1] wrapped
        periodically (cross-correlation, PyTorch's conv). ``filters`` returns (banks, k) or
        (banks, k, k). Separate learning rates via :meth:`param_lrs`.
    """

    def __init__(self, L: int, dim: int = 1, *, k: int = 5, banks: int = 4, activation: str = "tanh",
                 soft: bool = True, num_out: int = 1, init_bias_zero: bool = False,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"dim: allowed 1, 2 (got {dim!r})")
        if k < 1 or k % 2 == 0 or k > L:
            raise ValueError(f"k: must be odd and in [1, L] (got {k!r}, L={L})")
        if banks < 1 or num_out < 1:
            raise ValueError(f"banks, num_out: must be >= 1 (got {banks}, {num_out})")
        _activation(activation)
        self.L, self.dim, self.k, self.banks, self.act, self.num_out = L, dim, k, banks, activation, num_out
        dev = generator.device if generator is not None else None
        fan_in = k ** dim
        bound = 1.0 / math.sqrt(fan_in)  # PyTorch's default conv init: U(-1/sqrt(fan_in), ...) for w and b
        shape = (banks, 1) + (k,) * dim
        self.weight = nn.Parameter((torch.rand(shape, generator=generator, device=dev, dtype=dtype) * 2 - 1) * bound)
        b0 = torch.zeros(banks, device=dev, dtype=dtype) if init_bias_zero else \
            (torch.rand(banks, generator=generator, device=dev, dtype=dtype) * 2 - 1) * bound
        self.bias = nn.Parameter(b0)
        self.nl = banks * L ** dim
        if soft:
            self.register_buffer("readout", torch.full((num_out, self.nl), 1.0 / math.sqrt(self.nl), device=dev, dtype=dtype))
        else:
            self.readout = nn.Parameter(torch.randn(num_out, self.nl, generator=generator, device=dev, dtype=dtype)
                                        / math.sqrt(self.nl))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """g(circular conv), (n, banks, L) or (n, banks, L, L)."""
        z = _as_image(x, self.L, self.dim)
        p = (self.k - 1) // 2
        z = Fn.pad(z, (p, p) * self.dim, mode="circular")
        conv = Fn.conv1d if self.dim == 1 else Fn.conv2d
        return _activation(self.act)(conv(z, self.weight, self.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x).reshape(x.shape[0], -1)  # (n, nl), bank-major
        out = h @ self.readout.T  # (n, num_out)
        return out[:, 0] if self.num_out == 1 else out

    @property
    def filters(self) -> torch.Tensor:
        """(banks, k) or (banks, k, k) filter weights."""
        return self.weight[:, 0]

    def param_lrs(self, lr_l1: float, lr_l2: float | None = None, lr_bias: float | None = None) -> dict[str, float]:
        """{parameter name: lr}: filters lr_l1, readout lr_l2 (if trained), conv bias lr_bias."""
        lrs = {"weight": lr_l1, "bias": lr_l1 if lr_bias is None else lr_bias}
        if isinstance(self.readout, nn.Parameter):
            lrs["readout"] = lr_l1 if lr_l2 is None else lr_l2
        return lrs


class ConvTwoLayer(nn.Module):
    """The reference's ``ConvTwoLayer`` (driver ``--model convolutional``), crash bugs fixed.

    Parameters
    ----------
    L, dim : int
    K : int
        Conv channels.
    k : int
        Filter size; no padding, so H_out = L - k + 1.
    activation : {"erf", "tanh", "relu"}
    train_bias : bool
        Conv bias present and trained iff True (reference: bias iff trained).
    generator : torch.Generator, optional

    Convention:
        x as :class:`SoftConv`; h = maxpool_2(sigma(conv)) (floor for odd H_out), and
        s = sum(h) / num_hidden with num_hidden = K * prod(pooled spatial shape) computed from
        the actual pooled shape. forward returns s (n,); :meth:`outputs` [s, -s] (class 0 iff
        s >= 0, the original targets). All parameters share the unscaled lr.
    """

    def __init__(self, L: int, dim: int = 1, *, K: int = 8, k: int = 5, activation: str = "erf",
                 train_bias: bool = False, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"dim: allowed 1, 2 (got {dim!r})")
        if not 1 <= k <= L - 1:
            raise ValueError(f"k: must be in [1, L-1] so that the pooled map is non-empty (got {k!r}, L={L})")
        _activation(activation)
        self.L, self.dim, self.K, self.k, self.act = L, dim, K, k, activation
        dev = generator.device if generator is not None else None
        bound = 1.0 / math.sqrt(k ** dim)
        self.weight = nn.Parameter((torch.rand((K, 1) + (k,) * dim, generator=generator, device=dev, dtype=dtype) * 2 - 1) * bound)
        if train_bias:
            self.bias = nn.Parameter((torch.rand(K, generator=generator, device=dev, dtype=dtype) * 2 - 1) * bound)
        else:
            self.bias = None
        pooled = (L - k + 1) // 2
        self.num_hidden = K * pooled ** dim
        # fixed readout, +1 to output 0 and -1 to output 1 (reference fc2), a buffer so .to() moves it
        self.register_buffer("fc2", torch.tensor([1.0, -1.0], device=dev, dtype=dtype))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        z = _as_image(x, self.L, self.dim)
        conv, pool = (Fn.conv1d, Fn.max_pool1d) if self.dim == 1 else (Fn.conv2d, Fn.max_pool2d)
        return pool(_activation(self.act)(conv(z, self.weight, self.bias)), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x)
        return h.reshape(x.shape[0], -1).sum(-1) / self.num_hidden  # (n,)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 2) = [s, -s]."""
        return self.forward(x)[:, None] * self.fc2

    @property
    def filters(self) -> torch.Tensor:
        return self.weight[:, 0]
