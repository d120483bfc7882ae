"""Non-linear Gaussian process (NLGP), spec emergence.md §2.2.

x_i = erf(a·z_i) / N with z the latent field (:class:`~featlab.data.latent.LatentField`),
a the erf coefficient of the gain convention and N the normaliser that gives unit variance.

Convention:
    ``gain_convention="original"`` (default, sgoldt/conv_emerge ``inputs.NLGP``):
    x = erf(g z/√2)/√γ(g), γ(g) = (2/π)·arcsin(g²/(1+g²)).
    ``"followup"`` (leonlufkin/Localization ``datasets/nonlinear_gp.py``):
    x = erf(g_f z)/Z(g_f), Z² = (2/π)·arcsin(2g_f²/(1+2g_f²)).
    They coincide for g_original = √2·g_followup (same latent draw → identical samples).
    With latent variance s² = C_ii ≠ 1 (jitter, clipped circulant), ``variance="exact"``
    uses γ_s = (2/π)·arcsin(2a²s²/(1+2a²s²)) (unit variance exactly); ``"reference"`` uses
    the unit-diagonal γ (the reference; variance 1 + O(ε) with jitter ε).
    Limits: g → 0 Gaussian; g_original = 1 uniform on [-√3, √3]; g → ∞ binary ±1.
"""
from __future__ import annotations

import math

import torch

from .latent import CHUNK, LatentField
from .quadrature import gaussian_expectation

__all__ = [
    "NLGP",
    "erf_coefficient",
    "nlgp_normaliser",
    "nlgp_covariance",
    "nlgp_marginal_kurtosis",
]

_CONVENTIONS = ("original", "followup")


def erf_coefficient(gain: float, gain_convention: str = "original") -> float:
    """a such that x ∝ erf(a z): g/√2 (``"original"``) or g (``"followup"``)."""
    if gain_convention not in _CONVENTIONS:
        raise ValueError(f"gain_convention must be 'original' or 'followup', got {gain_convention!r}")
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    return float(gain) / math.sqrt(2.0) if gain_convention == "original" else float(gain)


def _second_moment(a: float, s2: float = 1.0) -> float:
    """E[erf(a z)²] for z ~ N(0, s²): (2/π)·arcsin(2a²s²/(1+2a²s²)) (arcsine identity)."""
    return (2.0 / math.pi) * math.asin(2 * a * a * s2 / (1 + 2 * a * a * s2))


def nlgp_normaliser(gain: float, gain_convention: str = "original",
                    latent_variance: float = 1.0) -> float:
    """The divisor N = √E[erf(a z)²], z ~ N(0, s²), making the NLGP marginal unit-variance.

    Parameters
    ----------
    gain : float
        g (> 0) in ``gain_convention``.
    gain_convention : {"original", "followup"}
    latent_variance : float
        s²; 1 gives the reference √γ(g) (original) or Z(g_f) (follow-up).

    Returns
    -------
    float
    """
    a = erf_coefficient(gain, gain_convention)
    return math.sqrt(_second_moment(a, latent_variance))


def nlgp_covariance(C_hat: torch.Tensor, gain: float, gain_convention: str = "original",
                    normaliser: float | None = None) -> torch.Tensor:
    """Exact NLGP covariance from the realised latent covariance (arcsine identity).

    Σ_ij = (2/(π N²))·arcsin(2a²·Ĉ_ij / (1 + 2a²s²)) with s² = Ĉ_ii (taken from Ĉ[0, 0]; the
    latent has constant variance), i.e. (2/(πγ))·arcsin(g²Ĉ_ij/(1+g²s²)) in the original
    convention. Works elementwise, so ``C_hat`` may be a dense (D, D) matrix or a circulant
    first-row image.

    Parameters
    ----------
    C_hat : Tensor
        Realised latent covariance (or its first row image); float64.
    gain, gain_convention : see :class:`NLGP`.
    normaliser : float or None
        N in use; None → the exact N at s² (unit variance).

    Returns
    -------
    Tensor like ``C_hat``, float64.
    """
    a = erf_coefficient(gain, gain_convention)
    C = torch.as_tensor(C_hat, dtype=torch.float64)
    s2 = float(C.reshape(-1)[0])
    N2 = _second_moment(a, s2) if normaliser is None else normaliser**2
    arg = (2 * a * a * C / (1 + 2 * a * a * s2)).clamp(-1.0, 1.0)  # |arg| < 1 up to round-off
    return (2.0 / (math.pi * N2)) * torch.asin(arg)


def nlgp_marginal_kurtosis(gain: float, gain_convention: str = "original", n: int = 200) -> float:
    """κ(g) = E[erf(a z)⁴]/E[erf(a z)²]², z ~ N(0, 1), by float64 quadrature.

    Parameters
    ----------
    gain : float
        g > 0 in ``gain_convention``.
    gain_convention : {"original", "followup"}
    n : int
        Gauss–Hermite nodes (≥ 100) while a = g/√2 ≤ 2; for steeper erf the composite
        Gauss–Legendre rule of :mod:`featlab.data.quadrature` resolving the scale 1/a is used
        (plain Gauss–Hermite does not converge there). Doubling ``n`` changes the result by
        < 1e-10 (tested).

    Returns
    -------
    float in (1, 3): decreasing from 3 (g → 0, Gaussian) to 1 (g → ∞, binary).
    """
    if n < 100:
        raise ValueError(f"n must be >= 100, got {n!r}")
    a = erf_coefficient(gain, gain_convention)
    m = gaussian_expectation(lambda z: torch.stack([torch.erf(a * z) ** 2, torch.erf(a * z) ** 4], -1),
                             n=n, scale=min(1.0, 1.0 / a))
    return float(m[1] / m[0] ** 2)


class NLGP:
    """NLGP data model: x = erf(a z)/N with z a :class:`LatentField` (spec §2.2).

    Parameters
    ----------
    L : int
        Linear size (D = L**dim).
    xi : float
        Latent correlation length in sites (ξ·L if ``extensive``).
    gain : float
        g > 0 in ``gain_convention``.
    dim : {1, 2}
    gain_convention : {"original", "followup"}
        See the module Convention block; g_original = √2·g_followup.
    boundary : {"periodic", "open"}
        Periodic (default): FFT latent sampler, no jitter. Open: Cholesky with jitter.
    extensive : bool
        ξ ← ξ·L.
    variance : {"exact", "reference"}
        ``"exact"``: normaliser at the realised latent variance s² (unit variance).
        ``"reference"`` (compat, sgoldt/conv_emerge ``inputs.NLGP``): normaliser γ(g) of the
        unit diagonal; with jitter ε the variance is ≈ 1 + O(ε).
    jitter : float or None
        Latent εI (the reference uses 1e-3).
    psd : {"refuse", "clip"}
        An indefinite periodic latent kernel (ξ not small against L) is refused (default)
        or its negative eigenvalues clipped with a warning (:class:`~featlab.data.latent.LatentField`).

    Attributes
    ----------
    latent : LatentField
    a : float
        erf coefficient (g/√2 or g_f).
    normaliser : float
        N in use.
    D : int

    Convention:
        Samples (n, L) in 1D, (n, L, L) in 2D (row-major), on ``generator.device``.
        ``covariance()`` is the exact covariance of the samples: the arcsine formula applied
        to the latent covariance the sampler realises (C_eff, or C + εI). Zero mean and
        symmetric under x → -x.
    """

    def __init__(self, L: int, xi: float, gain: float, dim: int = 1, gain_convention: str = "original",
                 boundary: str = "periodic", extensive: bool = False, variance: str = "exact",
                 jitter: float | None = None, psd: str = "refuse"):
        if variance not in ("exact", "reference"):
            raise ValueError(f"variance must be 'exact' or 'reference', got {variance!r}")
        self.a = erf_coefficient(gain, gain_convention)
        self.gain, self.gain_convention, self.variance = float(gain), gain_convention, variance
        self.latent = LatentField(L, xi, dim, boundary, extensive, jitter, psd)
        self.psd = psd
        self.L, self.xi, self.dim, self.boundary, self.extensive = L, xi, dim, boundary, extensive
        self.D, self.jitter = self.latent.D, self.latent.jitter
        s2 = self.latent.site_variance if variance == "exact" else 1.0
        self.normaliser = nlgp_normaliser(gain, gain_convention, s2)

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent samples z to NLGP samples erf(a z)/N (elementwise)."""
        return torch.erf(self.a * z) / self.normaliser

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, chunk_size: int = CHUNK) -> torch.Tensor:
        """n samples (n, L) or (n, L, L) on ``generator.device``."""
        z = self.latent.sample(n, generator, dtype=dtype, chunk_size=chunk_size)
        return torch.erf(z.mul_(self.a), out=z).div_(self.normaliser)  # = transform(z), in place

    def covariance(self) -> torch.Tensor:
        """Exact covariance (D, D) float64 of the samples (the Gaussian clone's covariance)."""
        return nlgp_covariance(self.latent.covariance(), self.gain, self.gain_convention,
                               self.normaliser)

    @property
    def marginal_kurtosis(self) -> float:
        """κ of one site, at the realised latent variance (a → a·s)."""
        a_eff = self.a * math.sqrt(self.latent.site_variance)
        return nlgp_marginal_kurtosis(a_eff, "followup")

    def __repr__(self) -> str:
        return (f"NLGP(L={self.L}, xi={self.xi}, gain={self.gain}, dim={self.dim}, "
                f"gain_convention={self.gain_convention!r}, boundary={self.boundary!r}, "
                f"extensive={self.extensive}, variance={self.variance!r}, jitter={self.jitter})")
