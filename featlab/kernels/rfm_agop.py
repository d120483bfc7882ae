"""Closed-form gradients and AGOP of kernel predictors, and the M update (spec agop_rfm.md §6).

f(q) = sum_i alpha_i k_M(x_i, q); the AGOP sum_q sum_c grad f_c(q) grad f_c(q)^T is computed
in closed form, batched over query points, never as an n x n x d tensor.
"""
from __future__ import annotations

import torch

from .mahalanobis import apply_M, grad_weights, packed_grad_weights

__all__ = ["kernel_grads", "kernel_agop", "kernel_agop_packed", "packed_rows_mm", "accumulate_outer",
           "normalise_M", "matrix_power_psd"]

_BLOCK = 2**24  # elements of one (rows x n) block when batch_size is None


def matrix_power_psd(G: torch.Tensor, power: float) -> torch.Tensor:
    """G^power for symmetric PSD G (eigh, negative eigenvalues clipped to 0); a vector G is a diagonal."""
    if power == 1.0:
        return G.clone()
    if G.ndim == 1:
        return G.clamp(min=0).pow(power)
    w, U = torch.linalg.eigh((G + G.T) / 2)
    return (U * w.clamp(min=0).pow(power)) @ U.T


def normalise_M(G: torch.Tensor, m_norm: str, n_points: int) -> torch.Tensor:
    """Scale M by the rule ``m_norm``.

    Convention:
        max: M / max_ij M (max entry = 1, as pip rfm / xRFM); mean: M / |S| (the original
        notebook's mean over AGOP points); trace: tr M = 1 (sum for a diagonal); frobenius:
        ||M||_F = 1; none: unchanged.
    """
    if m_norm == "max":
        return G / G.max()
    if m_norm == "mean":
        return G / n_points
    if m_norm == "trace":
        return G / (G.sum() if G.ndim == 1 else G.trace())
    if m_norm == "frobenius":
        return G / torch.linalg.norm(G)
    if m_norm == "none":
        return G
    raise ValueError(f"m_norm={m_norm!r} is not allowed; allowed: max, mean, trace, frobenius, none")


def _grads(Kt_mm, alpha: torch.Tensor, XM: torch.Tensor, QM: torch.Tensor) -> torch.Tensor:
    """(m, c, d) gradients K~ (alpha_c * X M) - (K~ alpha_c) * (q M).

    ``Kt_mm(V)`` returns K~ @ V for the block's weights K~ (m, n) (a matrix, or a product that
    reads them from a packed buffer); one product per output with RHS [alpha_c * XM, alpha_c].
    """
    d = XM.shape[1]
    out = torch.empty(QM.shape[0], alpha.shape[1], d, dtype=XM.dtype, device=XM.device)
    for c in range(alpha.shape[1]):
        a = alpha[:, c:c + 1]  # (n, 1)
        KV = Kt_mm(torch.cat([a * XM, a], 1))  # (m, d + 1)
        out[:, c] = KV[:, :d] - KV[:, d:] * QM
    return out


def _dense_mm(Kt: torch.Tensor):
    return lambda V: Kt @ V


def kernel_grads(Q: torch.Tensor, X: torch.Tensor, alpha: torch.Tensor, M: torch.Tensor | None, *,
                 kind: str = "laplace", bandwidth: float = 10.0) -> torch.Tensor:
    """Closed-form gradients of f(q) = sum_i alpha_i k_M(x_i, q) at every query, shape (m, c, d).

    Convention:
        grad_q f_c = sum_i alpha_ic K~(q, x_i) M (x_i - q) (spec §6), computed as
        K~ (alpha_c * X M) - (K~ alpha_c) * (q M); the self term (q = x_i) is excluded.
    """
    Kt = grad_weights(Q, X, M, kind=kind, bandwidth=bandwidth)  # (m, n)
    return _grads(_dense_mm(Kt), alpha, apply_M(X, M), apply_M(Q, M))


def kernel_agop(Q: torch.Tensor, X: torch.Tensor, alpha: torch.Tensor, M: torch.Tensor | None, *,
                kind: str = "laplace", bandwidth: float = 10.0, diag: bool = False,
                centering: bool = False, batch_size: int | None = None) -> torch.Tensor:
    """Summed AGOP  sum_{q in Q} sum_c grad f_c(q) grad f_c(q)^T of the kernel predictor.

    Returns (d, d), or its diagonal (d,) when ``diag``. ``centering`` subtracts the mean of the
    flattened (point, class) gradient vectors, pooled over classes (xRFM ``center_grads``).
    ``batch_size`` (query rows per block) never changes the result.
    """
    bs = batch_size or max(1, _BLOCK // max(X.shape[0], 1))
    XM = apply_M(X, M)  # (n, d), once
    blocks = (_grads(_dense_mm(grad_weights(Q[s:s + bs], X, M, kind=kind, bandwidth=bandwidth)), alpha, XM,
                     apply_M(Q[s:s + bs], M)) for s in range(0, Q.shape[0], bs))
    return accumulate_outer(blocks, Q.shape[1], diag=diag, centering=centering, like=Q)


def packed_rows_mm(P: torch.Tensor, s: int, e: int, V: torch.Tensor) -> torch.Tensor:
    """K~[s:e] @ V for the K~ stored in the strict upper triangle of P (W of ``gram_with_grad_weights``).

    Three GEMMs on views, nothing gathered: rows s..e-1 of K~ are P[:s, s:e]^T (above the
    diagonal block, read transposed by the GEMM itself), the symmetrised strict upper part of
    the diagonal block, and P[s:e, e:] (right of it).
    """
    B = P[s:e, s:e].triu(1)  # (b, b)
    out = (B + B.mT) @ V[s:e]
    if s > 0:
        out += P[:s, s:e].mT @ V[:s]
    if e < P.shape[0]:
        out += P[s:e, e:] @ V[e:]
    return out


def kernel_agop_packed(P: torch.Tensor, rows: torch.Tensor | slice, X: torch.Tensor, alpha: torch.Tensor,
                       M: torch.Tensor | None, *, diag: bool = False, centering: bool = False,
                       batch_size: int | None = None) -> torch.Tensor:
    """:func:`kernel_agop` at the training points ``X[rows]``, with K~ read from its upper triangle P.

    ``P`` is the W of :func:`featlab.kernels.mahalanobis.gram_with_grad_weights` for ``X`` (same
    M, kernel and bandwidth as the predictor), so no distance is recomputed. ``rows``: a slice of
    consecutive points (products on views, :func:`packed_rows_mm`) or an index tensor (the
    rows of K~ are gathered, :func:`featlab.kernels.mahalanobis.packed_grad_weights`). Equals
    ``kernel_agop(X[rows], X, alpha, M, ...)`` up to rounding (tested).
    """
    n = X.shape[0]
    bs = batch_size or max(1, _BLOCK // max(n, 1))
    XM = apply_M(X, M)  # (n, d), once; the queries' rows are XM[r]
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n)
        if step != 1:
            rows = torch.arange(start, stop, step, device=X.device)
    if isinstance(rows, slice):
        blocks = (_grads(lambda V, a=a: packed_rows_mm(P, a, min(a + bs, stop), V), alpha, XM,
                         XM[a:min(a + bs, stop)]) for a in range(start, stop, bs))
    else:
        idx = rows.to(X.device)
        blocks = (_grads(_dense_mm(packed_grad_weights(P, idx[a:a + bs])), alpha, XM, XM[idx[a:a + bs]])
                  for a in range(0, len(idx), bs))
    return accumulate_outer(blocks, X.shape[1], diag=diag, centering=centering, like=X)


def accumulate_outer(blocks, d: int, *, diag: bool = False, centering: bool = False,
                     like: torch.Tensor) -> torch.Tensor:
    """Sum of g g^T over the rows of gradient blocks (..., d), streamed block by block.

    Returns (d, d), or its diagonal (d,) when ``diag``. ``centering`` subtracts the mean of
    all rows (pooled over points, positions and classes), i.e. sum (g - gbar)(g - gbar)^T.
    """
    G = torch.zeros(d if diag else (d, d), dtype=like.dtype, device=like.device)
    gsum = torch.zeros(d, dtype=like.dtype, device=like.device)
    count = 0
    for g in blocks:
        g = g.reshape(-1, d)  # (rows, d)
        G += (g * g).sum(0) if diag else g.T @ g
        gsum += g.sum(0)
        count += g.shape[0]
    if centering:
        mean = gsum / count
        G -= count * (mean * mean if diag else torch.outer(mean, mean))
    return G


