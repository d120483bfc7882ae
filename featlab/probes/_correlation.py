"""Correlation of two matrices, as used by the NFA/CNFA (spec agop_rfm §5).

Convention:
    ``pearson``: ρ = ⟨A−ā, B−b̄⟩_F / (‖A−ā‖_F‖B−b̄‖_F) with ā the scalar mean of all entries
    (the ImageNet scripts' ``correlation``, without its in-place mutation). ``cosine``: the
    uncentred ⟨A,B⟩_F/(‖A‖_F‖B‖_F) (``hyperparam_cnfa_verification/nfa.py:corr``, ``vgg_vis``).
    ``pearson_offdiag`` [design]: Pearson over the off-diagonal entries of square matrices only
    (removes the identity-like Gram diagonal that inflates both others). Computed in float64;
    inputs are never modified. Returns a Python float (nan if a centred input is constant).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["correlation", "METRICS"]

METRICS = ("pearson", "cosine", "pearson_offdiag")


def _to64(A) -> torch.Tensor:
    if isinstance(A, np.ndarray):
        return torch.from_numpy(np.array(A, dtype=np.float64))
    return A.detach().to(device="cpu", dtype=torch.float64).clone()


def correlation(A, B, metric: str = "pearson") -> float:
    """Correlation of matrices ``A`` and ``B`` (same shape) under ``metric``.

    Parameters
    ----------
    A, B : Tensor or ndarray, same shape
    metric : {"pearson", "cosine", "pearson_offdiag"}

    Returns
    -------
    float
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    a, b = _to64(A), _to64(B)
    if a.shape != b.shape:
        raise ValueError(f"A and B must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if metric == "pearson_offdiag":
        if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
            raise ValueError(f"metric='pearson_offdiag' needs square matrices of size >= 2, got {tuple(a.shape)}")
        mask = ~torch.eye(a.shape[0], dtype=torch.bool)
        a, b = a[mask], b[mask]
    a, b = a.reshape(-1), b.reshape(-1)
    if metric != "cosine":
        a, b = a - a.mean(), b - b.mean()
    den = a.norm() * b.norm()
    if float(den) == 0.0:
        return float("nan")
    return float((a @ b) / den)
