"""Mahalanobis Laplace and Gaussian kernels via quadratic forms (spec agop_rfm.md §6).

Convention:
    X: (n, d), Z: (m, d). M is either a full PSD matrix (d, d) or a diagonal given as a
    vector (d,). ||v||_M = sqrt(max(v^T M v, 0)); squared distances are computed as
    x^T M x + z^T M z - 2 x^T M z with two matmuls and clamped at 0 (no sqrt(M) needed).
    Laplace: k = exp(-||x - z||_M / L); Gaussian: k = exp(-||x - z||_M^2 / (2 L^2)).
"""
from __future__ import annotations

import enum

import torch

__all__ = ["KernelKind", "apply_M", "sq_mahalanobis", "laplace_kernel", "gaussian_kernel",
           "kernel_matrix", "grad_weights", "self_tol", "gram_with_grad_weights", "packed_grad_weights"]


class KernelKind(str, enum.Enum):
    """Radial kernel profile of the Mahalanobis distance.

    LAPLACE: exp(-r/L); non-differentiable at r = 0 (the self term is excluded from gradients).
        The RFM default (Science 2024); robust, the reference choice.
    GAUSSIAN: exp(-r^2/(2L^2)); smooth everywhere, more sensitive to the bandwidth.
    """

    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"


def apply_M(X: torch.Tensor, M: torch.Tensor | None) -> torch.Tensor:
    """``X @ M`` for a full M, ``X * M`` for a diagonal vector M, ``X`` for ``M=None`` (identity)."""
    if M is None:
        return X
    return X * M if M.ndim == 1 else X @ M


def sq_mahalanobis(X: torch.Tensor, Z: torch.Tensor, M: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Mahalanobis distances ``(n, m)``, clamped at 0.

    Convention:
        D[i, j] = (x_i - z_j)^T M (x_i - z_j) computed by quadratic forms; M symmetric.
    """
    XM = apply_M(X, M)  # (n, d)
    ZM = apply_M(Z, M)  # (m, d)
    qx = (XM * X).sum(-1)  # (n,)
    qz = (ZM * Z).sum(-1)  # (m,)
    D = XM @ Z.T  # (n, m)
    D.mul_(-2).add_(qx[:, None]).add_(qz[None, :])
    return D.clamp_(min=0)


def _kernel_from_sq(D2: torch.Tensor, kind: KernelKind, bandwidth: float) -> torch.Tensor:
    if kind == KernelKind.LAPLACE:
        return D2.sqrt_().mul_(-1.0 / bandwidth).exp_()
    return D2.mul_(-0.5 / bandwidth**2).exp_()


def _augment(X: torch.Tensor, Z: torch.Tensor, M: torch.Tensor | None, scale: float):
    """(n, d+2) and (m, d+2) factors whose product is scale * ||x - z||_M^2 (one GEMM, no adds)."""
    XM = X if Z is X and M is None else apply_M(X, M)
    ZM = XM if Z is X else apply_M(Z, M)
    qx, qz = (XM * X).sum(-1), (ZM * Z).sum(-1)
    one_x, one_z = torch.ones_like(qx), torch.ones_like(qz)
    left = torch.cat([XM * (-2 * scale), (qx * scale)[:, None], (one_x * scale)[:, None]], 1)
    right = torch.cat([Z, one_z[:, None], qz[:, None]], 1)
    return left, right


def kernel_matrix(X: torch.Tensor, Z: torch.Tensor, M: torch.Tensor | None = None, *,
                  kind: str | KernelKind = "laplace", bandwidth: float = 10.0,
                  batch_size: int | None = None) -> torch.Tensor:
    """Kernel matrix ``(n, m)`` of the Mahalanobis ``kind`` kernel, built in row blocks.

    The squared distance, already divided by L^2 (Laplace) or 2 L^2 (Gaussian), comes out of a
    single GEMM of augmented factors [-2 x M, x^T M x, 1] [z, 1, z^T M z]^T; then clamp, sqrt,
    negate and exp run in place (4 passes over the matrix). When ``Z is X`` the diagonal
    distances are set to exactly 0 (k(x, x) = 1). ``batch_size`` (rows of X per block; default
    about 2^20 / m, so the elementwise passes run in cache) never changes the result.
    """
    kind = KernelKind(kind)
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    same = X is Z  # Gram matrix: exact zeros on the diagonal (sqrt amplifies rounding there)
    scale = 1.0 / bandwidth**2 if kind == KernelKind.LAPLACE else 0.5 / bandwidth**2
    left, right = _augment(X, Z, M, scale)
    n = X.shape[0]
    bs = batch_size or max(1, 2**20 // max(Z.shape[0], 1))  # ~1M-entry blocks stay cache-resident
    out = torch.empty(n, Z.shape[0], dtype=X.dtype, device=X.device)
    for s in range(0, n, bs):
        D = out[s:s + bs]
        torch.mm(left[s:s + bs], right.T, out=D)
        D.clamp_(min=0)
        if same:
            D[:, s:s + bs].diagonal().zero_()
        if kind == KernelKind.LAPLACE:
            D.sqrt_()
        D.neg_().exp_()
    return out


def laplace_kernel(X: torch.Tensor, Z: torch.Tensor, M: torch.Tensor | None = None, *,
                   bandwidth: float = 10.0, batch_size: int | None = None) -> torch.Tensor:
    """Laplace kernel ``exp(-||x - z||_M / L)``, shape (n, m). See :func:`kernel_matrix`."""
    return kernel_matrix(X, Z, M, kind="laplace", bandwidth=bandwidth, batch_size=batch_size)


def gaussian_kernel(X: torch.Tensor, Z: torch.Tensor, M: torch.Tensor | None = None, *,
                    bandwidth: float = 10.0, batch_size: int | None = None) -> torch.Tensor:
    """Gaussian kernel ``exp(-||x - z||_M^2 / (2 L^2))``, shape (n, m). See :func:`kernel_matrix`."""
    return kernel_matrix(X, Z, M, kind="gaussian", bandwidth=bandwidth, batch_size=batch_size)


def self_tol(dtype: torch.dtype) -> float:
    """Relative tolerance on r^2 below which a pair counts as coinciding.

    r^2 from quadratic forms carries a rounding error of a few eps (q^T M q + x^T M x), which
    the sqrt amplifies; a self pair must still be recognised: float64 1e-12, float32 1e-6.
    """
    return 1e-6 if dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-12


def grad_weights(Q: torch.Tensor, X: torch.Tensor, M: torch.Tensor | None, *,
                 kind: str | KernelKind = "laplace", bandwidth: float = 10.0) -> torch.Tensor:
    """K~(q, x_i) of spec §6, shape (m, n), such that grad_q f_c = sum_i alpha_ic K~ M (x_i - q).

    Convention:
        Laplace: K~ = k_M / (L ||q - x_i||_M), set to 0 where r^2 = ||q - x_i||_M^2 <=
        tol (max_q q^T M q + max_i x_i^T M x_i) + 1e-20, tol = 1e-12 (float64) / 1e-6 (float32)
        (see :func:`self_tol`): the non-differentiable self term is excluded. The threshold is
        one scalar per call (cheap); rounding of r^2 is below it.
        Gaussian: K~ = k_M / L^2. The 1/L factor is folded into K~.
    """
    kind = KernelKind(kind)
    left, right = _augment(Q, X, M, 1.0)
    d = Q.shape[1]
    thr = self_tol(Q.dtype) * float(left[:, d].max() + right[:, d + 1].max()) + 1e-20
    D2 = (left @ right.T).clamp_(min=0)  # (m, n) squared M-distances
    if kind == KernelKind.GAUSSIAN:
        return D2.mul_(-0.5 / bandwidth**2).exp_().div_(bandwidth**2)
    mask = D2 <= thr  # self pairs
    r = D2.sqrt_()
    Kt = torch.exp(r * (-1.0 / bandwidth))
    return Kt.div_(r.mul_(bandwidth).clamp_(min=1e-300 if Q.dtype == torch.float64 else 1e-30)).masked_fill_(mask, 0.0)


def gram_with_grad_weights(X: torch.Tensor, M: torch.Tensor | None, *, kind: str | KernelKind = "laplace",
                           bandwidth: float = 10.0, batch_size: int | None = None,
                           out: tuple[torch.Tensor, torch.Tensor] | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The training Gram matrix K and the AGOP's gradient weights K~ of the same points, from one distance pass.

    Convention:
        Returns (K, W), both (n, n), upper triangles only: K[i, j] = k_M(x_i, x_j) for j >= i
        (diagonal exactly 1) and W[i, j] = K~(x_i, x_j) of :func:`grad_weights` for j > i (self
        pairs, r^2 <= the grad_weights threshold, are 0). The strict lower triangles (and W's
        diagonal) are not set: K and K~ are symmetric, so the upper triangle is all of each (the
        ridge solve reads K's, ``ridge_solve(..., triangle="upper")``; the AGOP reads W's,
        :func:`featlab.kernels.rfm_agop.packed_rows_mm` / :func:`packed_grad_weights`). Each
        pair distance is computed once (block row i against columns j >= i: half the GEMM of
        :func:`kernel_matrix`, with the same augmented factors), so the AGOP needs no distance
        GEMM of its own. Why the upper triangle: it is filled by contiguous row blocks, and read as
        the column-major ``K.mT`` it is the lower one, which LAPACK's potrf factorises fastest
        (measured ~9% faster than the upper one), in place. ``out=(K, W)`` reuses two (n, n)
        buffers (no new memory and no first-touch page faults across RFM iterations).
        ``batch_size`` (rows per block) never changes the result.
    """
    kind = KernelKind(kind)
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    laplace = kind == KernelKind.LAPLACE
    scale = 1.0 / bandwidth**2 if laplace else 0.5 / bandwidth**2
    left, right = _augment(X, X, M, scale)  # D = scale * r^2 from one GEMM
    n, d = X.shape
    qmax = float(right[:, d + 1].max())  # max_i x_i^T M x_i
    thr = (self_tol(X.dtype) * 2 * qmax + 1e-20) * scale  # grad_weights' self-pair threshold, in units of D
    if out is None:
        out = (torch.empty(n, n, dtype=X.dtype, device=X.device), torch.empty(n, n, dtype=X.dtype, device=X.device))
    K, W = out
    bs = batch_size or min(256, n)  # GEMMs with >= 256 rows run at full speed
    for s in range(0, n, bs):
        e = min(s + bs, n)
        D, T = K[s:e, s:], W[s:e, s:]  # rows s..e-1 against columns s..n-1 (the diagonal block and right of it)
        torch.mm(left[s:e], right[s:].T, out=D)
        D.clamp_(min=0)
        D.diagonal().zero_()
        if laplace:
            self_pair = D <= thr
            D.sqrt_()  # r / L
            torch.mul(D, bandwidth**2, out=T)  # L r
            D.neg_().exp_()  # kernel
            T.reciprocal_().mul_(D).masked_fill_(self_pair, 0.0)  # K~ = k / (L r)
        else:
            D.neg_().exp_()
            torch.div(D, bandwidth**2, out=T)  # K~ = k / L^2
    return K, W


def packed_grad_weights(P: torch.Tensor, rows: torch.Tensor | slice) -> torch.Tensor:
    """Rows of K~ (m, n) from its strict upper triangle ``P`` (the W of :func:`gram_with_grad_weights`):
    K~[i, j] = P[min(i,j), max(i,j)], K~[i, i] = 0.

    ``rows``: a slice or an index tensor of training points (the AGOP sample).
    """
    n = P.shape[0]
    if isinstance(rows, slice):
        r = torch.arange(n, device=P.device)[rows]
    else:
        r = rows.to(P.device)
    lo, hi = P[:, r].T, P[r]  # K~[i, j] for j < i sits in column i; for j > i in row i
    cols = torch.arange(n, device=P.device)
    Kt = torch.where(cols[None, :] < r[:, None], lo, hi)  # (m, n)
    Kt[torch.arange(len(r), device=P.device), r] = 0.0  # self pairs
    return Kt
