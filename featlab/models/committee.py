"""The original two-layer committee ``TwoLayer`` of Ingrosso & Goldt (spec emergence §4.1).

    h_k = w_k · x / √D + b_k               # (n, K) pre-activations
    σ(h) = erf(h / √2)                      # the reference's "erf" activation
    s   = (1/norm) Σ_k v_k σ(h_k)           # (n,)   readout; the two outputs are [s, −s]

| mode     | v_k             | norm | v trained  | first-layer lr |
|----------|-----------------|------|------------|----------------|
| mf       | 1               | K    | no         | lr·K           |
| lazy     | 1               | √K   | no         | lr·√K          |
| conv     | 1               | 1    | no         | lr             |
| 2layer   | N(0, 0.1²) init | 1    | yes, lr/D  | lr             |

The bias learning rate is (mode-scaled lr)/D. With these scalings the per-unit SGD update is
−2·lr·(s − y)·σ'(h_k)·x/√D in ``mf``, ``lazy`` and ``conv`` alike (spec §11 "mode table").

The module is the plain, autograd-friendly definition: it is the oracle that the hand-written
fast SGD kernels of :mod:`featlab.train.online` are tested against.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

__all__ = ["TwoLayer", "committee_norm", "committee_lrs", "pm1_bias", "MODES", "BIASES",
           "ACTIVATIONS", "activation", "activation_grad"]

MODES = ("mf", "lazy", "conv", "2layer")
BIASES = ("train_pm1", "fixed", "none")
ACTIVATIONS = ("erf", "relu")
_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def committee_norm(mode: str, K: int) -> float:
    """The readout normaliser ``norm`` of ``mode`` (mf: K, lazy: √K, conv/2layer: 1)."""
    if mode not in MODES:
        raise ValueError(f"mode: allowed {', '.join(MODES)} (got {mode!r})")
    return {"mf": float(K), "lazy": math.sqrt(K), "conv": 1.0, "2layer": 1.0}[mode]


def committee_lrs(mode: str, lr: float, K: int, D: int) -> dict[str, float]:
    """Per-parameter learning rates ``{"w", "b", "v"}`` of ``mode`` (spec §4.1 table).

    Convention:
        ``w``: lr·norm for mf/lazy (lr·K, lr·√K), lr for conv/2layer; ``b``: lr_w/D;
        ``v``: lr/D in ``2layer`` and 0 otherwise (the readout is fixed).
    """
    norm = committee_norm(mode, K)
    lr_w = lr * norm if mode in ("mf", "lazy") else lr
    return {"w": lr_w, "b": lr_w / D, "v": lr / D if mode == "2layer" else 0.0}


def pm1_bias(K: int, value: float = 1.0, dtype=torch.float32, device=None) -> torch.Tensor:
    """The ±``value`` bias split: b_k = +value for k < ⌊K/2⌋, −value otherwise. Shape (K,)."""
    b = torch.full((K,), -float(value), dtype=dtype, device=device)
    b[: K // 2] = float(value)
    return b


def activation(h: torch.Tensor, name: str = "erf") -> torch.Tensor:
    """σ(h): ``erf`` is erf(h/√2) (the reference's "erf"), ``relu`` is max(h, 0)."""
    if name == "erf":
        return torch.erf(h / _SQRT2)
    if name == "relu":
        return torch.relu(h)
    raise ValueError(f"activation: allowed {', '.join(ACTIVATIONS)} (got {name!r})")


def activation_grad(h: torch.Tensor, name: str = "erf") -> torch.Tensor:
    """σ'(h): √(2/π)·exp(−h²/2) for ``erf``; 1[h > 0] for ``relu``."""
    if name == "erf":
        return _SQRT_2_OVER_PI * torch.exp(-0.5 * h * h)
    if name == "relu":
        return (h > 0).to(h.dtype)
    raise ValueError(f"activation: allowed {', '.join(ACTIVATIONS)} (got {name!r})")


class TwoLayer(nn.Module):
    """Fully connected committee ``s = (1/norm) Σ_k v_k σ(w_k·x/√D + b_k)`` (reference ``TwoLayer``).

    Parameters
    ----------
    D : int
        Input dimension (L^dim).
    K : int
        Number of hidden units.
    mode : {"mf", "lazy", "conv", "2layer"}
        Readout and learning-rate scaling (module docstring table).
    bias : {"train_pm1", "fixed", "none"}
        ``train_pm1``: b = ±1 split (+ for k < ⌊K/2⌋), trained with lr_w/D (the reference's
        ``--bias``). ``fixed``: ±``bias_value``, not trained. ``none``: b = 0 (the reference
        default; warns with the odd ``erf`` activation, because s is then odd in x and the
        symmetric task stays at chance).
    bias_value : float
        Magnitude of the ±split for ``fixed`` (``train_pm1`` always starts at ±1).
    activation : {"erf", "relu"}
        σ; ``erf`` is erf(h/√2).
    std0 : float
        Init std of w (and of v in ``2layer``); the reference's ``std0 = 0.1``.
    generator : torch.Generator, optional
        Draws the init on the generator's device.
    dtype : torch.dtype

    Convention:
        x: (n, D) with 2D inputs flattened row-major. ``forward`` returns s: (n,);
        ``outputs`` returns (n, 2) = [s, −s] (the reference's two outputs, class 0 ↔ output 0,
        i.e. predicted class 0 iff s ≥ 0). ``w``: (K, D), ``b``: (K,), ``v``: (K,). The loss
        of the reference, ``F.mse_loss([s, −s], 2·onehot(c) − 1)``, equals (s − y)² with
        y = +1 for class 0 and −1 for class 1 (:meth:`loss`).
    """

    def __init__(self, D: int, K: int, *, mode: str = "mf", bias: str = "train_pm1",
                 bias_value: float = 1.0, activation: str = "erf", std0: float = 0.1,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        if D < 1:
            raise ValueError(f"D: must be >= 1 (got {D})")
        if K < 1:
            raise ValueError(f"K: must be >= 1 (got {K})")
        committee_norm(mode, K)
        if bias not in BIASES:
            raise ValueError(f"bias: allowed {', '.join(BIASES)} (got {bias!r})")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: allowed {', '.join(ACTIVATIONS)} (got {activation!r})")
        if bias == "none" and activation == "erf":
            warnings.warn("bias='none' with the odd erf activation: s(-x) = -s(x) and the "
                          "x -> -x symmetric task stays at chance accuracy; use bias='train_pm1'",
                          stacklevel=2)
        self.D, self.K, self.mode, self.bias_kind, self.act = D, K, mode, bias, activation
        self.norm = committee_norm(mode, K)
        dev = generator.device if generator is not None else None
        w = std0 * torch.randn(K, D, generator=generator, device=dev, dtype=dtype)  # (K, D)
        self.w = nn.Parameter(w)
        if bias == "none":
            self.register_buffer("b", torch.zeros(K, dtype=dtype, device=dev))
        elif bias == "fixed":
            self.register_buffer("b", pm1_bias(K, bias_value, dtype, dev))
        else:
            self.b = nn.Parameter(pm1_bias(K, 1.0, dtype, dev))
        if mode == "2layer":
            self.v = nn.Parameter(std0 * torch.randn(K, generator=generator, device=dev, dtype=dtype))
        else:
            self.register_buffer("v", torch.ones(K, dtype=dtype, device=dev))

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """h = x wᵀ/√D + b, shape (n, K)."""
        return x @ self.w.T / math.sqrt(self.D) + self.b  # (n, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """s(x), shape (n,) for x of shape (n, D) (or (n, L, L), flattened row-major)."""
        x = x.reshape(x.shape[0], -1)
        return activation(self.preactivation(x), self.act) @ self.v / self.norm  # (n,)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The reference's two outputs [s, −s], shape (n, 2)."""
        s = self.forward(x)
        return torch.stack([s, -s], dim=1)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of (s − y)², y = ±1 (= the reference's two-output MSE)."""
        return ((self.forward(x) - y) ** 2).mean()

    def param_lrs(self, lr: float) -> dict[str, float]:
        """Learning rate of each trained parameter name, from :func:`committee_lrs`."""
        lrs = committee_lrs(self.mode, lr, self.K, self.D)
        return {n: lrs[n] for n, _ in self.named_parameters()}
