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
           "kernel_matrix", "grad_weights", "self_tol"]


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
