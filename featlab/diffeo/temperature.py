"""Temperatures and typical displacements (spec §1.4; pcsl-epfl/diffeomorphism diff.py).

The closed forms are large-c asymptotes that ignore the r < c + 1/2 mask, so the nominal
delta is not the realised displacement; :func:`displacement_variance` gives the exact
per-pixel variance from the mode sum and :func:`displacement_stats` summarises it.
"""
from __future__ import annotations

import math

import torch

from .fields import mode_mask, sample_displacement, sin_basis

__all__ = ["temperature_range", "typical_temperature", "typical_displacement",
           "displacement_variance", "displacement_stats"]


def _check_cut(cut) -> int:
    if int(cut) != cut or cut < 2:
        raise ValueError(f"cut must be an integer >= 2 (ln(cut) divides); got {cut!r}")
    return int(cut)


def _check_n(n) -> int:
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2; got {n!r}")
    return int(n)


def temperature_range(n: int, cut: int) -> tuple[float, float]:
    """(T_min, T_max) = (1/(pi n^2 ln c), 4/(pi^3 c^2 ln c)).

    T_min gives a typical displacement of 1/2 pixel in the centre; T_max is the highest T
    without overhangs (the 2021-04-16 form).

    Convention:
        T in the unit-square convention (pixel displacement = sqrt(T) u n, after the 2021-04
        rescaling; older T values are n^2 times larger). Requires cut >= 2.
    """
    n, c = _check_n(n), _check_cut(cut)
    return 1.0 / (math.pi * n ** 2 * math.log(c)), 4.0 / (math.pi ** 3 * c ** 2 * math.log(c))


def typical_temperature(delta: float, cut: int, n: int) -> float:
    """T = 4 delta^2 / (pi n^2 ln c): the temperature of typical displacement ``delta`` px.

    Convention:
        delta in pixels; T in the unit-square convention (see :func:`temperature_range`).
        T(delta)/T_max = pi^2 c^2 delta^2 / n^2.
    """
    n, c = _check_n(n), _check_cut(cut)
    if delta < 0:
        raise ValueError(f"delta must be >= 0 pixels; got {delta!r}")
    return 4.0 * delta ** 2 / (math.pi * n ** 2 * math.log(c))


def typical_displacement(T: float, cut: int, n: int) -> float:
    """delta = (n/2) sqrt(pi T ln c), in pixels (inverse of :func:`typical_temperature`).

    Convention:
        T in the unit-square convention; the result is the nominal (large-c) displacement in
        pixels, not the realised RMS (see :func:`displacement_stats`).
    """
    n, c = _check_n(n), _check_cut(cut)
    if T < 0:
        raise ValueError(f"T must be >= 0; got {T!r}")
    return 0.5 * n * math.sqrt(math.pi * T * math.log(c))


def displacement_variance(n: int, cut: int, T: float, *, dtype=torch.float64) -> torch.Tensor:
    """Exact E[dx(y, x)^2] = T n^2 sum_{kept (i,j)} sin^2(pi i x~) sin^2(pi j y~)/(i^2 + j^2).

    Returns an (n, n) map indexed [y, x], in px^2. dy has the same map transposed
    (equal for the square grid used here).

    Convention:
        Per component (dx); the mask is the code's r < c + 1/2. T in unit-square units.
    """
    n = _check_n(n)
    if T < 0:
        raise ValueError(f"T must be >= 0; got {T!r}")
    if int(cut) != cut or cut < 1:
        raise ValueError(f"cut must be an integer >= 1; got {cut!r}")
    E2 = mode_mask(int(cut), dtype=dtype) ** 2  # (k, k) [i-1, j-1]
    S2 = sin_basis(n, int(cut), dtype=dtype) ** 2  # (n, k)
    return T * n ** 2 * (S2 @ E2.T @ S2.T)  # (n, n): sum_ij S2[y, j] E2[i, j] S2[x, i]


def displacement_stats(n: int, cut: int, T: float, *, n_samples: int = 200,
                       generator: torch.Generator | None = None) -> dict[str, float]:
    """Realised displacement sizes at temperature T (the nominal delta is an asymptote).

    Returns
    -------
    dict with
        ``delta_nominal``: :func:`typical_displacement` (px);
        ``rms_centre``: sqrt(E dx^2) at the continuous centre x~ = y~ = 1/2 (px, per component);
        ``rms_mean``: sqrt of the image-average of E dx^2 over the n x n grid (px, per component);
        ``max_mean``: Monte-Carlo mean over ``n_samples`` fields of max_pixels |d| with
        |d| = sqrt(dx^2 + dy^2) (px).

    Convention:
        RMS values are per component; the vector RMS is sqrt(2) times larger.
    """
    n, c = _check_n(n), _check_cut(cut)
    var = displacement_variance(n, c, T)
    k = torch.arange(1, c + 1, dtype=torch.float64)
    s2 = torch.sin(math.pi * k / 2) ** 2  # (k,) sin^2(pi i / 2)
    centre = T * n ** 2 * (s2[:, None] * mode_mask(c) ** 2 * s2[None, :]).sum()
    d = sample_displacement(n_samples, n, T, c, generator)  # (S, 2, n, n)
    dmax = d.pow(2).sum(1).sqrt().flatten(1).max(1).values  # (S,)
    return {"delta_nominal": typical_displacement(T, c, n), "rms_centre": float(centre.sqrt()),
            "rms_mean": float(var.mean().sqrt()), "max_mean": float(dmax.mean())}
