"""Neural Feature Ansatz for fully connected layers: WᵀW ∝ G^α (spec agop_rfm §3).

Convention:
    W is the layer's weight (out, in), PyTorch layout; G is the AGOP of the model's outputs
    w.r.t. the layer's *input* h_ℓ (in, in), mean over samples, summed over outputs, float64.
    α = ½ (Science 2024 convention) and α = 1 (arXiv v1 proportionality) are both reported by
    default. Matrix powers use eigh with negative eigenvalues clipped to 0.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ._agop import agop
from ._correlation import correlation
from .hooks import get_module

__all__ = ["matrix_power_psd", "nfa"]


def matrix_power_psd(G: torch.Tensor, alpha: float) -> torch.Tensor:
    """G^α for a symmetric PSD matrix via eigh; negative eigenvalues are clipped to 0.

    The input is symmetrised ((G + Gᵀ)/2) first; α = 1 returns that symmetrised matrix.
    """
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"G must be a square matrix, got shape {tuple(G.shape)}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    G = (G + G.T) / 2
    if alpha == 1:
        return G
    lam, V = torch.linalg.eigh(G)
    lam = lam.clamp_min(0) ** alpha  # clip negative eigenvalues to 0
    return (V * lam) @ V.T


def nfa(model: nn.Module, layer: str, X: torch.Tensor, alpha: float | Iterable[float] = (0.5, 1.0),
        metric: str = "pearson", **agop_kw) -> dict[float, float]:
    """Correlation ρ(WᵀW, G^α) for the linear layer ``layer`` (a ``named_modules()`` name).

    Parameters
    ----------
    model : nn.Module
    layer : str
        Name of a module with a 2-D ``weight`` (out, in), e.g. ``nn.Linear``.
    X : Tensor (n, *shape)
        Model inputs.
    alpha : float or iterable of floats
        Powers of the AGOP to compare with (default ½ and 1).
    metric : {"pearson", "cosine", "pearson_offdiag"}
        See :func:`featlab.probes.correlation`.
    **agop_kw
        Forwarded to :func:`featlab.probes.agop` (method, batch_size, chunk_size, ...).

    Returns
    -------
    dict
        {α: ρ}.
    """
    mod = get_module(model, layer)
    W = getattr(mod, "weight", None)
    if W is None or W.ndim != 2:
        raise ValueError(f"layer {layer!r} must have a 2-D weight (out, in); use cnfa for conv layers")
    alphas = (float(alpha),) if isinstance(alpha, (int, float)) else tuple(float(a) for a in alpha)
    G = agop(model, X, layer=layer, **agop_kw)  # (in, in)
    W = W.detach().to("cpu", torch.float64)
    WtW = W.T @ W  # (in, in)
    G = G.to("cpu", torch.float64)
    return {a: correlation(WtW, matrix_power_psd(G, a), metric) for a in alphas}
