"""Visualising a patch Mahalanobis matrix M: top eigenvectors as filters, and edge maps (spec §10).

Edge maps follow aradha/convrfm ``vgg_vis``: circularly pad by q//2, take every q x q patch,
right-multiply it by sqrt(M), and take per channel the l2 norm of the transformed tile.
"""
from __future__ import annotations

import numpy as np
import torch

from .convrfm import extract_patches

__all__ = ["sqrtm_psd", "top_eigenfilters", "edge_map", "minmax", "figure_filters", "figure_edge_maps"]


def sqrtm_psd(M: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a PSD matrix (eigh, negative eigenvalues clipped to 0)."""
    if M.ndim == 1:
        return M.clamp(min=0).sqrt()
    w, U = torch.linalg.eigh((M + M.T) / 2)
    return (U * w.clamp(min=0).sqrt()) @ U.T


def top_eigenfilters(M: torch.Tensor, n_channels: int, k: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k eigenvectors of M reshaped to filters (k, c, q, q), largest eigenvalue first.

    Convention:
        M is (c q^2, c q^2) in the (channel, row, col) patch order of F.unfold / a flattened conv
        weight; eigenvector signs are arbitrary (eigh's). Returns (filters, eigenvalues).
    """
    D = M.shape[0]
    q = int(round((D // n_channels) ** 0.5))
    if n_channels * q * q != D:
        raise ValueError(f"n_channels={n_channels} does not divide M of size {D} into q x q filters")
    w, U = torch.linalg.eigh((M + M.T) / 2)
    k = min(k, D)
    return U[:, -k:].flip(1).T.reshape(k, n_channels, q, q), w[-k:].flip(0)


def edge_map(X: torch.Tensor, M: torch.Tensor | None, patch_size: int = 3) -> torch.Tensor:
    """Per-channel norms of sqrt(M)-filtered patches, (n, c, H, W) for images X (n, c, H, W).

    Convention:
        map[n, ch, i, j] = || (u_ij sqrt(M))[ch block] ||_2, u_ij the circularly padded q x q
        patch centred at (i, j) in (channel, row, col) order. M = I gives sqrt of the q x q box
        sum of the squared image; M = e e^T for a single pixel e gives |x| at that offset.
        M = None means I. The reference shows layer 1 as RGB after a global min-max scaling and
        sums deeper layers over channels (do that when plotting).
    """
    n, c, H, W = X.shape
    U = extract_patches(X, patch_size, "circular")  # (n, HW, c q^2)
    if M is not None:
        U = U @ sqrtm_psd(M).to(U)
    return U.reshape(n, H * W, c, -1).norm(dim=-1).transpose(1, 2).reshape(n, c, H, W)


def minmax(A: np.ndarray | torch.Tensor) -> np.ndarray:
    """Global min-max scaling to [0, 1] (constant input -> zeros)."""
    A = A.detach().cpu().numpy() if isinstance(A, torch.Tensor) else np.asarray(A)
    lo, hi = A.min(), A.max()
    return (A - lo) / (hi - lo) if hi > lo else np.zeros_like(A)


def figure_filters(filters: torch.Tensor, eigenvalues: torch.Tensor | None = None, title: str = ""):
    """Top eigenvectors of M as filters, each min-max scaled; channel-summed if c != 3.

    One panel per filter (rows of at most 8), titled with its eigenvalue. Grey-scale filters
    share one colour bar, "min-max scaled per filter" (0 = that filter's min, 1 = its max); RGB
    filters (c = 3) are shown as colours and have none.
    """
    from ..plotting import colorbar, figure, image, panel_grid

    k = filters.shape[0]
    nrows, ncols = panel_grid(k, 8)
    fig, ax = figure(nrows, ncols, width=1.15, height=1.3)
    rgb = filters.shape[1] == 3
    im = None
    for i, a in enumerate(ax.ravel()):
        if i >= k:
            a.set_axis_off()
            continue
        f = filters[i]
        im = image(a, minmax(f.permute(1, 2, 0)) if rgb else minmax(f.sum(0)), cmap=None if rgb else "gray",
                   vmin=0, vmax=1)
        if eigenvalues is not None:
            a.set_title(f"λ{i + 1} = {float(eigenvalues[i]):.3g}", fontsize=7)
    if not rgb and im is not None:
        colorbar(fig, im, ax, "min-max scaled\nper filter", ticks=(0, 0.5, 1))
    if title:
        fig.suptitle(title)
    return fig


def figure_edge_maps(images: torch.Tensor, maps: dict[str, torch.Tensor]):
    """Rows: images; columns: the image then one edge map per named M (channel-summed, min-max).

    Every panel is min-max scaled on its own (shared colour bar "min-max scaled per panel").
    """
    from ..plotting import colorbar, figure, image

    n = images.shape[0]
    fig, ax = figure(n, 1 + len(maps), width=1.3, height=1.3)
    im = None
    for r in range(n):
        im = image(ax[r, 0], minmax(images[r].sum(0)), cmap="gray", vmin=0, vmax=1)
        for j, (name, mp) in enumerate(maps.items(), start=1):
            image(ax[r, j], minmax(mp[r].sum(0)), cmap="gray", vmin=0, vmax=1)
            if r == 0:
                ax[r, j].set_title(name, fontsize=8)
        if r == 0:
            ax[r, 0].set_title("image", fontsize=8)
        ax[r, 0].set_ylabel(f"image {r + 1}", fontsize=7)
    if im is not None:
        colorbar(fig, im, ax, "min-max scaled\nper panel", ticks=(0, 0.5, 1))
    return fig
