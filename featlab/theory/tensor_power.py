"""Z-eigenvectors of a symmetric 4th-order tensor by SS-HOPM (spec emergence.md §6.1).

A Z-eigenpair of T solves T(., w, w, w) = mu w with ||w|| = 1. The extremisers of
T(w, w, w, w) on the sphere are such pairs and are the best rank-1 approximations of T: this
is the "tensor decomposition" link of Ingrosso & Goldt. For white sub-Gaussian data
T = (kappa - 3) diag, T(w^4) = (kappa - 3) IPR(w), and the most negative directions are one-hot.

Method: the shifted symmetric higher-order power method (Kolda & Mayo, SIAM J. Matrix Anal.
Appl. 32(4), 2011): w <- normalise(s T(., w, w, w) + alpha w), with s = +1 to maximise and
s = -1 to minimise T(w^4). The shift alpha makes s T(w^4) + alpha ||w||^4 locally convex; by
default it is chosen adaptively per iterate (Kolda & Mayo 2014, GEAP):
alpha = max(0, tau - 3 lambda_min(s T(., ., w, w))), which keeps the iteration monotone
without the slow convergence of a fixed worst-case shift.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["z_eigenvectors", "ZEigen", "tensor_apply", "ti_spectrum"]


@dataclass(frozen=True)
class ZEigen:
    """Result of :func:`z_eigenvectors`.

    Attributes
    ----------
    vectors : (m, D) float64 tensor
        Distinct unit eigenvectors, best first (sign * value descending); m <= k. The overall
        sign of each vector is fixed so that its largest-|.| entry is positive.
    values : (m,) float64 tensor
        mu = T(w, w, w, w) (unsigned).
    counts : (m,) int64 tensor
        How many random starts converged to each (up to sign/translation).
    residual : (m,) float64 tensor
        ||T(., w, w, w) - mu w||.
    n_iter : int
        Iterations run (the same for all starts; stops when every start has converged).
    """

    vectors: torch.Tensor
    values: torch.Tensor
    counts: torch.Tensor
    residual: torch.Tensor
    n_iter: int


def ti_spectrum(K: torch.Tensor) -> torch.Tensor:
    """conj(rfft_c K(a, b, c)), (D, D, D//2+1): precomputed once for repeated :func:`tensor_apply`."""
    return torch.fft.rfft(K, dim=2).conj()


def tensor_apply(T: torch.Tensor, W: torch.Tensor, *, spectrum: torch.Tensor | None = None,
                 chunk_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """(T(., w, w, w), T(., ., w, w)) for each row w of W.

    Convention:
        T is either dense (D, D, D, D) or translation-invariant (D, D, D) with
        T(i, j, k, l) = K(j - i, k - i, l - i) mod D (1D periodic; see
        :mod:`featlab.theory.cumulants`); the number of dimensions tells them apart.
        W: (S, D). Returns (S, D) and (S, D, D).

    Cost: dense S * D^4 (one einsum). Translation-invariant: the inner sum over c,
    Y(i, a, b) = sum_c K(a, b, c) w(i + c), is a circular correlation done by rfft
    (S * D^3 / 2 complex products plus S * D^2 small FFTs), then S * D^3; ``spectrum`` (from
    :func:`ti_spectrum`) skips re-transforming K, and ``chunk_size`` starts are done at a time
    (memory ~ chunk_size * D^3 complex; a memory knob only).
    """
    S, D = W.shape
    if T.dim() == 4:
        M = torch.einsum("ijkl,sk,sl->sij", T, W, W)  # (S, D, D)
        return torch.einsum("sij,sj->si", M, W), M
    if T.dim() != 3:
        raise ValueError(f"T must be (D, D, D, D) or translation-invariant (D, D, D), got shape {tuple(T.shape)}")
    Kh = ti_spectrum(T) if spectrum is None else spectrum  # (a, b, f)
    r = torch.arange(D, device=W.device)
    cols = (r[:, None] + r[None, :]) % D  # (i, a) -> i + a
    M = torch.empty(S, D, D, dtype=W.dtype, device=W.device)
    for s0 in range(0, S, chunk_size):
        Wc = W[s0:s0 + chunk_size]  # (s, D)
        Wh = torch.fft.rfft(Wc, dim=-1)  # (s, f)
        Y = torch.fft.irfft(Kh[None] * Wh[:, None, None, :], n=D, dim=-1)  # (s, a, b, i)
        Wsh = Wc[:, cols]  # (s, i, b): w_{i+b}
        Z = torch.einsum("sabi,sib->sia", Y, Wsh)  # (s, i, a) = M(i, i + a)
        M[s0:s0 + chunk_size, r[:, None], cols] = Z
    return torch.einsum("sij,sj->si", M, W), M


def _circular_overlap(U: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """max over circular shifts of |<u, roll(v, s)>| for each row u of U."""
    cc = torch.fft.irfft(torch.fft.rfft(U, dim=-1).conj() * torch.fft.rfft(v), n=U.shape[-1], dim=-1)
    return cc.abs().max(-1).values


def z_eigenvectors(
    T: torch.Tensor,
    k: int = 1,
    *,
    shift: float | None = None,
    n_starts: int = 32,
    sign: int = -1,
    max_iter: int = 500,
    tol: float = 1e-8,
    dedupe_tol: float = 1e-4,
    dedupe_translation: bool = False,
    generator: torch.Generator | None = None,
) -> ZEigen:
    """The ``k`` best distinct Z-eigenvectors of a symmetric 4th-order tensor (SS-HOPM).

    Convention:
        T: dense (D, D, D, D) or translation-invariant (D, D, D) (see :func:`tensor_apply`),
        assumed fully symmetric. ``sign=-1`` looks for the most negative T(w^4) (sub-Gaussian
        data: localised directions), ``sign=+1`` for the most positive. Vectors are unit-norm
        rows, sign-fixed (largest-|.| entry positive), compared up to sign and, with
        ``dedupe_translation``, up to circular shifts (1D periodic data). float64.

    Parameters
    ----------
    T : tensor
    k : int
        Number of distinct eigenvectors to return (fewer if fewer were found).
    shift : float, optional
        Fixed shift alpha >= 0. None (default): the adaptive local-convexity shift above.
    n_starts : int
        Random starts, uniform on the sphere, drawn on ``generator``'s device.
    sign : {-1, +1}
    max_iter, tol : int, float
        Stop when every start moved less than ``tol`` (2-norm) in one iteration. Localised
        eigenvectors of translation-invariant tensors converge slowly along the (nearly flat)
        translation direction; check ``residual``.
    dedupe_tol : float
        Two vectors are the same when their |overlap| > 1 - dedupe_tol.

    Returns
    -------
    ZEigen

    References
    ----------
    T. G. Kolda, J. R. Mayo, "Shifted power method for computing tensor eigenpairs", SIAM J.
    Matrix Anal. Appl. 32(4):1095-1124, 2011; "An adaptive shifted power method for computing
    generalized tensor eigenpairs", SIAM J. Matrix Anal. Appl. 35(4), 2014.
    """
    if sign not in (-1, 1):
        raise ValueError(f"sign must be -1 or +1, got {sign!r}")
    if k < 1 or n_starts < 1:
        raise ValueError(f"k and n_starts must be >= 1, got k={k!r}, n_starts={n_starts!r}")
    if shift is not None and shift < 0:
        raise ValueError(f"shift must be >= 0 or None, got {shift!r}")
    if T.dim() not in (3, 4) or len(set(T.shape)) != 1:
        raise ValueError(f"T must be (D, D, D, D) or translation-invariant (D, D, D), got shape {tuple(T.shape)}")
    T = T.to(torch.float64)
    D = T.shape[0]
    g = generator if generator is not None else torch.Generator(device=T.device)
    W = torch.randn(n_starts, D, generator=g, dtype=torch.float64, device=g.device).to(T.device)
    W = W / W.norm(dim=-1, keepdim=True)  # (S, D)
    tau = 1e-6 * float(T.abs().max().clamp_min(1e-300))
    spec = ti_spectrum(T) if T.dim() == 3 else None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        Tw3, M = tensor_apply(T, W, spectrum=spec)  # (S, D), (S, D, D)
        if shift is None:
            lam_min = torch.linalg.eigvalsh(sign * M)[:, 0]  # (S,)
            alpha = (tau - 3 * lam_min).clamp_min(0)[:, None]
        else:
            alpha = shift
        Wn = sign * Tw3 + alpha * W
        Wn = Wn / Wn.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        moved = (Wn - W).norm(dim=-1).max()
        W = Wn
        if moved < tol:
            break
    Tw3, _ = tensor_apply(T, W, spectrum=spec)
    mu = (W * Tw3).sum(-1)  # (S,)
    res = (Tw3 - mu[:, None] * W).norm(dim=-1)
    idx = W.abs().argmax(-1)
    W = W * torch.sign(W.gather(1, idx[:, None]))  # sign-fix
    order = torch.argsort(sign * mu, descending=True)
    keep: list[int] = []
    counts: list[int] = []
    for i in order.tolist():
        w = W[i]
        if keep:
            U = W[keep]
            ov = _circular_overlap(U, w) if dedupe_translation else (U @ w).abs()
            hit = torch.nonzero(ov > 1 - dedupe_tol)
            if len(hit):
                counts[int(hit[0])] += 1
                continue
        keep.append(i)
        counts.append(1)
    sel = keep[:k]
    return ZEigen(vectors=W[sel], values=mu[sel], counts=torch.tensor(counts[:k]), residual=res[sel], n_iter=n_iter)
