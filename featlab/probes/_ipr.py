"""Localisation measures of receptive fields (spec emergence §5.1): IPR, participation ratio,
the iid baseline, pre-activation kurtosis and the localisation threshold.

(The module is private, ``_ipr``, because a submodule named ``ipr`` would shadow the public
function ``featlab.probes.ipr`` once imported.)
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["ipr", "participation_ratio", "ipr_baseline", "preactivation_kurtosis", "localised"]


def ipr(w):
    """Inverse participation ratio IPR(w) = Σ_i w_i⁴ / (Σ_i w_i²)², one value per row.

    Parameters
    ----------
    w : (..., D) tensor or array
        Receptive fields; 2D fields must be flattened first.

    Returns
    -------
    (...,) of the same kind (tensor or numpy array); NaN for an all-zero row.

    Convention:
        High = localised: 1 for a one-hot vector, 1/D for a constant, 3/(D+2) in expectation
        for iid Gaussian w. The reference's ``utils.IPR`` returns the *participation ratio*
        1/IPR under this name (spec §9 bug 2); featlab keeps the two separate.
    """
    w2 = w * w
    num = (w2 * w2).sum(-1)
    den = w2.sum(-1) ** 2
    if isinstance(w, torch.Tensor):
        return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)),
                           torch.full_like(den, float("nan")))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def participation_ratio(w):
    """PR(w) = (Σ w²)² / Σ w⁴ = 1/IPR(w): the effective number of sites, shape (...,).

    Convention:
        PR · IPR = 1 exactly; PR = D for a constant, 1 for a one-hot vector.
    """
    return 1.0 / ipr(w)


def ipr_baseline(D: int) -> float:
    """E[IPR] of an iid Gaussian vector in D dimensions: exactly 3/(D + 2).

    w/‖w‖ is uniform on the sphere, where E[u_i⁴] = 3/(D(D+2)). At D = 400 this is the flat
    ≈ 0.0075 line of the cover figure.
    """
    if D < 1:
        raise ValueError(f"D: must be >= 1 (got {D})")
    return 3.0 / (D + 2)


def localised(w, factor: float = 5.0):
    """Boolean (...,): IPR(w) > factor · 3/(D + 2) (featlab's threshold [design], default 5).

    Convention:
        w: (..., D) with D = w.shape[-1]; NaN IPRs (zero rows) are not localised.
    """
    if factor <= 0:
        raise ValueError(f"factor: must be > 0 (got {factor})")
    v = ipr(w)
    thr = factor * ipr_baseline(w.shape[-1])
    return v > thr


def preactivation_kurtosis(w: torch.Tensor, x: torch.Tensor, *, chunk_size: int = 8192) -> torch.Tensor:
    """Empirical kurtosis κ(λ_k) = E[λ⁴]/E[λ²]² of λ_k = w_k·x over held-out samples.

    Parameters
    ----------
    w : (K, D) tensor
    x : (n, D) tensor (2D samples flattened row-major, or (n, L, L))
    chunk_size : int
        Samples per chunk (memory knob; the result does not depend on it).

    Returns
    -------
    (K,) float64 tensor. Gaussian: 3. For iid unit-variance coordinates of kurtosis κ_x,
    κ(λ) − 3 = (κ_x − 3)·IPR(w) (spec §5.1, the "kurtosis during learning" link).

    Convention:
        Raw (uncentred) moments: the data models have zero mean by symmetry. Computed in
        float64.
    """
    w = torch.as_tensor(w).double()
    x = torch.as_tensor(x)
    x = x.reshape(x.shape[0], -1)
    if chunk_size < 1:
        raise ValueError(f"chunk_size: must be >= 1 (got {chunk_size})")
    m2 = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    m4 = torch.zeros_like(m2)
    for i in range(0, x.shape[0], chunk_size):
        lam = x[i:i + chunk_size].double().to(w.device) @ w.T   # (n, K)
        l2 = lam * lam
        m2 += l2.sum(0)
        m4 += (l2 * l2).sum(0)
    n = x.shape[0]
    return (m4 / n) / (m2 / n) ** 2
