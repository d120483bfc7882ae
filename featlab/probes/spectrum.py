"""Filter spectra on the free-boundary grid Laplacian (spec §5; relativestability ``laplacian``).

gamma_l = mean over the (out, in) slices w in R^{F x F} of a layer of <w, Psi_l>_F^2, with
Psi_l the eigenvectors of the F x F Neumann grid Laplacian (lambda_ab = mu_a + mu_b,
mu_a = 2 - 2 cos(pi a / F), DCT-II eigenvectors). featlab sums gamma inside degenerate
eigenspaces by default, which makes the numbers independent of the basis eigh happens to pick.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["grid_laplacian", "laplacian_spectrum", "LaplacianSpectrum"]


def grid_laplacian(F: int, *, dtype=torch.float64) -> torch.Tensor:
    """Laplacian of the F x F free-boundary grid graph, shape (F^2, F^2).

    Convention:
        Node (r, s) (row r, column s) has index r*F + s (row-major, like ``w.reshape(-1)``);
        L = degree - adjacency with 4-neighbours inside the grid (Neumann boundary).
    """
    if int(F) != F or F < 1:
        raise ValueError(f"F must be an integer >= 1; got {F!r}")
    A1 = torch.diag(torch.ones(F - 1, dtype=dtype), 1)
    A1 = A1 + A1.T  # (F, F) path graph adjacency
    I = torch.eye(F, dtype=dtype)
    A = torch.kron(A1, I) + torch.kron(I, A1)  # (F^2, F^2): vertical + horizontal neighbours
    return torch.diag(A.sum(1)) - A


@dataclass(frozen=True)
class LaplacianSpectrum:
    """eigenvalues (ascending), gamma (weight per eigenvalue) and multiplicity of each."""

    eigenvalues: torch.Tensor
    gamma: torch.Tensor
    multiplicity: torch.Tensor


def laplacian_spectrum(weight: torch.Tensor, normalise: bool = False, merge_degenerate: bool = True,
                       *, tol: float = 1e-8) -> LaplacianSpectrum:
    """Mean squared projection of a layer's F x F kernels on the grid-Laplacian eigenvectors.

    Parameters
    ----------
    weight : Tensor, shape (..., F, F)
        Conv weight, e.g. (C_out, C_in, F, F); every leading index is one slice w.
    normalise : bool
        Divide gamma by its sum (the reference reports raw gamma).
    merge_degenerate : bool
        Sum gamma over eigenvalues equal within ``tol`` (basis independent). If False, one
        entry per eigenvector in eigh's (arbitrary within an eigenspace) basis.

    Returns
    -------
    LaplacianSpectrum with float64 tensors.

    Convention:
        Kernel w indexed [r, s], flattened row-major; eigenvalues ascending; gamma_l =
        mean_slices <w, Psi_l>^2 (sums over a degenerate eigenspace when merged). iid N(0, s^2)
        kernels give gamma = s^2 per eigenvector; the all-ones kernel gives (F^2, 0, ..., 0).
    """
    if weight.ndim < 2 or weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f"weight must have shape (..., F, F); got {tuple(weight.shape)}")
    F = weight.shape[-1]
    lam, Psi = torch.linalg.eigh(grid_laplacian(F))  # (F^2,), (F^2, F^2) columns = Psi_l
    w = weight.detach().reshape(-1, F * F).double().cpu()  # (S, F^2)
    gamma = (w @ Psi).pow(2).mean(0)  # (F^2,)
    mult = torch.ones_like(lam, dtype=torch.long)
    if merge_degenerate:
        groups = [[0]]
        for i in range(1, lam.numel()):
            (groups[-1].append(i) if lam[i] - lam[groups[-1][0]] <= tol else groups.append([i]))
        lam = torch.stack([lam[g].mean() for g in groups])
        gamma = torch.stack([gamma[g].sum() for g in groups])
        mult = torch.tensor([len(g) for g in groups])
    if normalise:
        gamma = gamma / gamma.sum()
    return LaplacianSpectrum(lam, gamma, mult)
