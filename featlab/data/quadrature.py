"""Gaussian quadrature helpers (float64): expectations over one or two standard normals.

Two rules are provided:

- **Gauss–Hermite** (probabilists' weight e^{-z²/2}): exact for polynomials of degree
  < 2n; the right tool for smooth integrands. numpy's node generator overflows above
  ~300 nodes, so ``n`` is capped at 300.
- **Composite Gauss–Legendre on geometric panels** (``scale=s``): panels on [0, z_max] whose
  widths grow geometrically from ``1e-4·min(s, 1)``, mirrored to the negative half-line.
  Use it when the integrand has a feature on a scale s ≪ 1 near z = 0, e.g. erf(a z)
  with a large gain a (s = 1/a). Plain Gauss–Hermite does not converge there: its node
  spacing near 0 is ~π/√(2n) ≈ 0.15 at n = 200, so erf(7 z) (g_original = 10) is already
  mis-integrated in the third digit (measured: κ = 1.037 at 200 nodes vs 1.0664 true).

:func:`gaussian_expectation` picks the rule: Gauss–Hermite when ``scale >= 0.5``, the
composite rule otherwise.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

__all__ = [
    "hermite_rule",
    "composite_rule",
    "gaussian_expectation",
    "gaussian_expectation_2d",
]

_MAX_GH = 300


@functools.lru_cache(maxsize=32)
def _hermite_np(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = hermegauss(n)
    return z, w / math.sqrt(2.0 * math.pi)


def hermite_rule(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss–Hermite nodes and weights for E[f(z)], z ~ N(0, 1).

    Parameters
    ----------
    n : int
        Number of nodes, 2 <= n <= 300.

    Returns
    -------
    z, w : Tensor (n,) float64
        ``E[f(z)] ≈ (w * f(z)).sum()``; the weights sum to 1.

    Convention:
        Probabilists' Hermite weight e^{-z²/2}/√(2π) (standard normal density), not e^{-z²}.
    """
    if not 2 <= int(n) <= _MAX_GH:
        raise ValueError(f"n must be an integer in [2, {_MAX_GH}], got {n!r}")
    z, w = _hermite_np(int(n))
    return torch.from_numpy(z.copy()), torch.from_numpy(w.copy())


@functools.lru_cache(maxsize=64)
def _composite_np(scale: float, n_panels: int, order: int, z_max: float) -> tuple[np.ndarray, np.ndarray]:
    x, wx = leggauss(order)
    edges = np.concatenate([[0.0], np.geomspace(1e-4 * min(scale, 1.0), z_max, n_panels)])
    a, b = edges[:-1, None], edges[1:, None]
    z = (0.5 * (b - a) * x + 0.5 * (b + a)).ravel()
    w = (0.5 * (b - a) * wx).ravel() * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return np.concatenate([-z[::-1], z]), np.concatenate([w[::-1], w])


def composite_rule(scale: float = 1.0, n_panels: int = 80, order: int = 16,
                   z_max: float = 38.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite Gauss–Legendre nodes/weights for E[f(z)], z ~ N(0, 1), resolving scale ``scale``.

    Parameters
    ----------
    scale : float
        Smallest length scale of the integrand near 0 (e.g. 1/a for erf(a z)), > 0.
    n_panels, order : int
        Panels per half-line and Legendre nodes per panel (2·n_panels·order nodes in all).
    z_max : float
        Truncation of the half-line; the Gaussian mass beyond 38 is below float64 resolution.

    Returns
    -------
    z, w : Tensor (2·n_panels·order,) float64, weights including the normal density.
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    z, w = _composite_np(float(scale), int(n_panels), int(order), float(z_max))
    return torch.from_numpy(z.copy()), torch.from_numpy(w.copy())


def gaussian_expectation(f: Callable[[torch.Tensor], torch.Tensor], n: int = 200,
                         scale: float = 1.0) -> torch.Tensor:
    """E[f(z)] for z ~ N(0, 1), in float64.

    Parameters
    ----------
    f : callable
        Maps a float64 node tensor of shape (m,) to values of shape (m, ...) (vectorised).
    n : int
        Gauss–Hermite nodes (used when ``scale >= 0.5``).
    scale : float
        Smallest feature scale of ``f`` near 0; below 0.5 the composite rule is used
        (with ``n_panels = max(80, n // 2)``).

    Returns
    -------
    Tensor of shape f(z).shape[1:], float64.
    """
    if scale >= 0.5:
        z, w = hermite_rule(n)
    else:
        z, w = composite_rule(scale, n_panels=max(80, n // 2))
    fz = f(z)
    return torch.tensordot(w, fz.to(torch.float64), dims=([0], [0]))


def gaussian_expectation_2d(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                            rho: torch.Tensor | float, n: int = 100) -> torch.Tensor:
    """E[f(u, v)] for (u, v) standard bivariate normal with correlation ``rho``, in float64.

    Uses the tensor Gauss–Hermite rule on independent (z1, z2) with u = z1,
    v = ρ z1 + √(1 − ρ²) z2; vectorised over any shape of ``rho``.

    Parameters
    ----------
    f : callable
        Elementwise in (u, v) (broadcasting tensors).
    rho : float or Tensor (...,)
        Correlations in [-1, 1].
    n : int
        Nodes per dimension (n² evaluations per ρ).

    Returns
    -------
    Tensor (...,) float64, the shape of ``rho``.
    """
    rho = torch.as_tensor(rho, dtype=torch.float64)
    if bool(((rho < -1) | (rho > 1)).any()):
        raise ValueError("rho must lie in [-1, 1]")
    z, w = hermite_rule(n)
    z1, z2 = z[:, None], z[None, :]  # (n, 1), (1, n)
    w2 = w[:, None] * w[None, :]  # (n, n)
    r = rho.reshape(-1, 1, 1)  # (m, 1, 1)
    u = z1.expand(n, n)[None]  # (1, n, n)
    v = r * z1 + torch.sqrt(torch.clamp(1 - r * r, min=0.0)) * z2  # (m, n, n)
    vals = f(u, v)  # (m, n, n)
    return (vals * w2).sum(dim=(-2, -1)).reshape(rho.shape)
