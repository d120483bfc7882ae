"""CNTK / NNGP of the reference "Vanilla" conv net in plain torch (spec agop_rfm.md §8.1).

Architecture (aradha/convrfm ``deep_conv_rfm/models.py``, built there with neural-tangents):
a q x q conv on patches (stride q on the patch-expanded image = stride 1 on the image), then
(depth - 1) x [q x q conv, stride 1, VALID], each conv followed by sqrt(2) ReLU, then
Flatten -> Dense. No bias, no pooling: only spatially aligned positions interact, so every
map is a per-position covariance of shape (n_x, n_z, H_l, W_l).

The module is private (``_cntk``) so that importing it cannot shadow the public function
``featlab.kernels.cntk`` with a submodule of the same name.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .convrfm import extract_patches
from .mahalanobis import apply_M

__all__ = ["cntk", "cntk_from_patches", "relu_kappa"]


def relu_kappa(rho: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(kappa_1, kappa_0) of the sqrt(2)-normalised ReLU arc-cosine kernels.

    Convention:
        kappa_1(rho) = (sqrt(1 - rho^2) + (pi - arccos rho) rho) / pi, kappa_1(1) = 1;
        kappa_0(rho) = (pi - arccos rho) / pi. rho is clamped to +-(1 - 1e-12) (float32:
        1e-6) so that autograd stays finite at coinciding patches (the error is O(1e-12)).
    """
    eps = 1e-6 if rho.dtype == torch.float32 else 1e-12
    rho = rho.clamp(-1 + eps, 1 - eps)
    theta = torch.arccos(rho)
    k0 = (math.pi - theta) / math.pi
    k1 = (torch.sqrt(1 - rho * rho) + (math.pi - theta) * rho) / math.pi
    return k1, k0


def _relu(S: torch.Tensor, sx: torch.Tensor, sz: torch.Tensor):
    """ReLU step on maps: S (nx, nz, H, W), self maps sx (nx, H, W), sz (nz, H, W)."""
    tiny = 1e-300 if S.dtype == torch.float64 else 1e-30
    norm = torch.sqrt((sx[:, None] * sz[None]).clamp(min=tiny))  # (nx, nz, H, W)
    k1, k0 = relu_kappa(S / norm)
    return norm * k1, k0


def _pool(T: torch.Tensor, q: int) -> torch.Tensor:
    """q x q box average, stride 1, VALID, over the last two axes of any leading shape."""
    lead = T.shape[:-2]
    out = F.avg_pool2d(T.reshape(-1, 1, *T.shape[-2:]), q, stride=1)
    return out.reshape(*lead, *out.shape[-2:])


def cntk_from_patches(U: torch.Tensor, V: torch.Tensor, grid: tuple[int, int], *,
                      M: torch.Tensor | None = None, patch_size: int = 3, depth: int = 3,
                      kind: str = "ntk", W_std: float = 1.0, n_channels: int | None = None
                      ) -> torch.Tensor:
    """CNTK/NNGP between patch tensors U (nx, P, D) and V (nz, P, D) on a (H1, W1) grid.

    Convention:
        Sigma^1_p(x, z) = W_std^2 x_p^T M z_p / (c q^2) (D = c q^2; ``n_channels`` only names c
        for that normaliser, default D / q^2). Then per layer: sqrt(2) ReLU (K, Kdot), and
        Sigma^{l+1} = W_std^2 pool_q(K^l), Theta^{l+1} = Sigma^{l+1} + W_std^2 pool_q(Theta^l Kdot^l).
        Readout: NTK = mean_p(K^L + Theta^L Kdot^L), NNGP = mean_p(K^L). Differentiable in U.
    """
    if kind not in ("ntk", "nngp"):
        raise ValueError(f"kind={kind!r} is not allowed; allowed: ntk, nngp")
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    H1, W1 = grid
    nx, P, D = U.shape
    if P != H1 * W1:
        raise ValueError(f"grid {grid} does not match P={P} positions")
    c = n_channels or max(1, D // patch_size**2)
    scale = W_std**2 / (c * patch_size**2)
    UM, VM = apply_M(U, M), apply_M(V, M)
    S = torch.einsum("xpd,zpd->xzp", UM, V).reshape(nx, V.shape[0], H1, W1) * scale  # (nx, nz, H, W)
    sx = (UM * U).sum(-1).reshape(nx, H1, W1) * scale  # (nx, H, W)
    sz = (VM * V).sum(-1).reshape(V.shape[0], H1, W1) * scale
    Theta = S
    for layer in range(depth):
        K, Kd = _relu(S, sx, sz)
        if layer == depth - 1:
            break
        if K.shape[-1] < patch_size or K.shape[-2] < patch_size:
            raise ValueError(f"depth={depth} is too deep for a {grid} grid with patch_size={patch_size}")
        S = W_std**2 * _pool(K, patch_size)
        Theta = S + W_std**2 * _pool(Theta * Kd, patch_size)
        sx, sz = W_std**2 * _pool(sx, patch_size), W_std**2 * _pool(sz, patch_size)  # K(x,x) = Sigma(x,x)
    if kind == "nngp":
        return K.mean((-2, -1))
    return (K + Theta * Kd).mean((-2, -1))


def cntk(X: torch.Tensor, Z: torch.Tensor | None = None, *, M: torch.Tensor | None = None,
         sqrtM: torch.Tensor | None = None, patch_size: int = 3, depth: int = 3, padding: bool = False,
         kind: str = "ntk", W_std: float = 1.0, chunk_size: int | None = None) -> torch.Tensor:
    """CNTK (or NNGP) of the reference Vanilla net between images X (nx, c, H, W) and Z.

    ``M`` acts inside the first layer (x_p^T M z_p); ``sqrtM`` instead transforms every patch
    vector by right-multiplication (u -> u sqrtM), as the reference does, which equals
    M = sqrtM sqrtM^T. ``padding``: zero-pad q//2 before taking patches (reference ``-padding``).
    ``chunk_size`` (rows of X per block) bounds memory at chunk * nz * H * W; same result.

    Convention:
        Returns (nx, nz), not normalised (the reference divides by max(K_train) afterwards).
    """
    Z = X if Z is None else Z
    pad = "zero" if padding else "none"
    U, V = extract_patches(X, patch_size, pad), extract_patches(Z, patch_size, pad)
    if sqrtM is not None:
        U, V = U @ sqrtM, V @ sqrtM
    H1 = X.shape[-2] + (2 * (patch_size // 2) if padding else 0) - patch_size + 1
    W1 = X.shape[-1] + (2 * (patch_size // 2) if padding else 0) - patch_size + 1
    kw = dict(M=M, patch_size=patch_size, depth=depth, kind=kind, W_std=W_std, n_channels=X.shape[1])
    bs = chunk_size or max(1, 2**24 // max(V.shape[0] * U.shape[1], 1))
    return torch.cat([cntk_from_patches(U[s:s + bs], V, (H1, W1), **kw) for s in range(0, len(U), bs)])
