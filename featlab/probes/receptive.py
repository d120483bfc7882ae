"""Position and width of receptive fields on the periodic lattice (spec emergence §5.2).

    profile ℓ:  1D ℓ_i = w_i²;  2D marginals ℓ_row = Σ_col w², ℓ_col = Σ_row w²
    centre:     m = Σ_j ℓ_j e^{2πij/L};  centre = (L/2π)·arg m  mod L
    R = |m|/Σℓ (concentration);  circular std = (L/2π)·√(−2 ln R)
    FWHM:       width of the half-maximum region around the peak

All functions take numpy arrays (or tensors, converted) and return numpy arrays.
"""
from __future__ import annotations

from enum import Enum

import numpy as np

__all__ = ["profile", "circular_centre", "concentration", "circular_std", "fwhm", "WidthMethod",
           "periodic_distance", "position_moments", "rayleigh_test", "tiling"]


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def profile(w, L: int, dim: int = 1) -> np.ndarray:
    """The receptive-field profile(s) of w.

    Parameters
    ----------
    w : (..., D) with D = L^dim (2D flattened row-major) or (..., L, L) in 2D
    L : int
    dim : 1 or 2

    Returns
    -------
    1D: (..., L) with ℓ_i = w_i². 2D: (..., 2, L): [..., 0, :] is the row profile
    ℓ_r = Σ_c w[r, c]² (position along axis 0, "y"), [..., 1, :] the column profile.

    Convention:
        Sites are i = 0..L−1; in 2D w[r, c] is w[r·L + c] (row-major).
    """
    w = _np(w)
    if dim == 1:
        if w.shape[-1] != L:
            raise ValueError(f"w: last axis must be L = {L} in 1D (got {w.shape[-1]})")
        return w ** 2
    if dim != 2:
        raise ValueError(f"dim: allowed 1, 2 (got {dim})")
    if w.shape[-1] == L * L:
        w = w.reshape(*w.shape[:-1], L, L)
    if w.shape[-2:] != (L, L):
        raise ValueError(f"w: needs (..., {L * L}) or (..., {L}, {L}) in 2D (got {w.shape})")
    w2 = w ** 2
    return np.stack([w2.sum(-1), w2.sum(-2)], axis=-2)


def _moment(ell) -> tuple[np.ndarray, np.ndarray]:
    ell = _np(ell)
    L = ell.shape[-1]
    phase = np.exp(2j * np.pi * np.arange(L) / L)
    return (ell * phase).sum(-1), ell.sum(-1)


def circular_centre(ell) -> np.ndarray:
    """Circular centre (L/2π)·arg Σ_j ℓ_j e^{2πij/L}, mapped to [0, L). Shape (...,).

    Convention:
        ℓ: (..., L) non-negative profile on a ring of L sites; the result is in sites, in
        [0, L) (the reference returns the (−L/2, L/2] representative). Equivariant under
        ``np.roll(ℓ, k)``: the centre moves by +k (mod L).
    """
    m, _ = _moment(ell)
    L = _np(ell).shape[-1]
    return np.mod(np.angle(m) * L / (2 * np.pi), L)


def concentration(ell) -> np.ndarray:
    """R = |Σ ℓ_j e^{2πij/L}| / Σ ℓ_j ∈ [0, 1]: 1 for a point mass, 0 for a uniform profile."""
    m, tot = _moment(ell)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(m) / tot


def circular_std(ell) -> np.ndarray:
    """(L/2π)·√(−2 ln R), in sites (≈ s for a narrow Gaussian profile of std s)."""
    R = concentration(ell)
    L = _np(ell).shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return L / (2 * np.pi) * np.sqrt(-2 * np.log(R))


def periodic_distance(a, b, L: float) -> np.ndarray:
    """min(|a − b| mod L, L − |a − b| mod L), elementwise."""
    d = np.mod(np.abs(_np(a) - _np(b)), L)
    return np.minimum(d, L - d)


def position_moments(ell) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the site index under ℓ/Σℓ after rolling the peak to L//2 (LSG).

    Returns positions in the original (unrolled) coordinates, mean mapped to [0, L).
    """
    ell = _np(ell)
    L = ell.shape[-1]
    flat = ell.reshape(-1, L)
    means, vars_ = np.empty(len(flat)), np.empty(len(flat))
    idx = np.arange(L)
    for n, e in enumerate(flat):
        shift = L // 2 - int(np.argmax(e))
        r = np.roll(e, shift)
        p = r / r.sum()
        mu = (p * idx).sum()
        means[n] = np.mod(mu - shift, L)
        vars_[n] = (p * (idx - mu) ** 2).sum()
    return means.reshape(ell.shape[:-1]), vars_.reshape(ell.shape[:-1])


class WidthMethod(str, Enum):
    """How the half-maximum crossings of a profile are located.

    LINEAR (default)
        Linear interpolation between the lattice points on each side of the two crossings
        nearest the peak. Exact for piecewise-linear profiles, robust, no dependency.
    SPLINE
        The reference's interpolating spline (``scipy.interpolate.UnivariateSpline(s=0)``)
        through ℓ − max/2; needs exactly two roots, else NaN. Smoother for wide bumps;
        sensitive to ringing between samples.
    """

    LINEAR = "linear"
    SPLINE = "spline"


def _fwhm_one(e: np.ndarray, method: WidthMethod) -> float:
    L = len(e)
    r = np.roll(e, L // 2 - int(np.argmax(e)))        # peak at L//2
    half = r.max() / 2
    above = r > half
    if not np.isfinite(half) or half <= 0:
        return float("nan")
    if np.count_nonzero(above != np.roll(above, 1)) != 2:  # not one contiguous arc above half
        return float("nan")
    if method is WidthMethod.SPLINE:
        from scipy.interpolate import UnivariateSpline

        xs = np.arange(L, dtype=float)
        roots = UnivariateSpline(xs, r - half, s=0).roots()
        return float(roots[1] - roots[0]) if len(roots) == 2 else float("nan")
    c = L // 2
    lo = c
    while lo > 0 and r[lo - 1] > half:
        lo -= 1
    hi = c
    while hi < L - 1 and r[hi + 1] > half:
        hi += 1
    if lo == 0 or hi == L - 1:
        return float("nan")
    left = lo - (r[lo] - half) / (r[lo] - r[lo - 1])      # crossing in [lo−1, lo]
    right = hi + (r[hi] - half) / (r[hi] - r[hi + 1])     # crossing in [hi, hi+1]
    return float(right - left)


def fwhm(ell, method: str | WidthMethod = WidthMethod.LINEAR) -> np.ndarray:
    """Full width at half maximum of each profile, in sites. Shape (...,); NaN when the
    region above half maximum is not a single arc (non-unimodal) or touches itself.

    Convention:
        ℓ: (..., L) on a ring; the profile is rolled so its peak sits at L//2 first. A
        Gaussian ℓ_i = e^{−(i−p)²/2s²} gives 2√(2 ln 2)·s. Apply it to w² profiles
        (:func:`profile`), whose width is 1/√2 of that of |w|.
    """
    m = WidthMethod(method)
    ell = _np(ell)
    flat = ell.reshape(-1, ell.shape[-1])
    return np.array([_fwhm_one(e, m) for e in flat]).reshape(ell.shape[:-1])


def rayleigh_test(centres, L: float) -> tuple[float, float]:
    """Rayleigh test of uniformity of ``centres`` (sites on a ring of L): (R̄, p-value).

    R̄ = |mean e^{2πiθ/L}|, Z = n·R̄², p ≈ e^{−Z}·(1 + (2Z − Z²)/(4n) − (24Z − 132Z² + 76Z³ −
    9Z⁴)/(288n²)) (Zar, Biostatistical Analysis). Small p rejects uniform tiling.
    """
    th = 2 * np.pi * _np(centres).ravel() / L
    n = len(th)
    if n == 0:
        return float("nan"), float("nan")
    R = float(np.abs(np.exp(1j * th).mean()))
    Z = n * R * R
    p = np.exp(-Z) * (1 + (2 * Z - Z ** 2) / (4 * n) - (24 * Z - 132 * Z ** 2 + 76 * Z ** 3 - 9 * Z ** 4) / (288 * n ** 2))
    return R, float(min(max(p, 0.0), 1.0))


def tiling(centres, L: float) -> dict[str, float]:
    """Tiling statistics of the centres of localised units on a ring of L sites.

    Returns ``n``, ``rayleigh_R``, ``rayleigh_p``, ``mean_nn_spacing`` (mean nearest-neighbour
    periodic distance) and ``uniform_spacing`` = L/n for comparison.
    """
    c = np.sort(np.mod(_np(centres).ravel(), L))
    n = len(c)
    R, p = rayleigh_test(c, L)
    if n >= 2:
        gaps = np.diff(np.concatenate([c, [c[0] + L]]))          # (n,) gaps around the ring
        nn = np.minimum(gaps, np.roll(gaps, 1))
        mean_nn = float(nn.mean())
    else:
        mean_nn = float("nan")
    return {"n": n, "rayleigh_R": R, "rayleigh_p": p, "mean_nn_spacing": mean_nn,
            "uniform_spacing": L / n if n else float("nan")}
