"""NORTA "Kur(k)" data model (spec emergence.md §2.5; leonlufkin/Localization ``datasets``,
``qdfs.AlgQDF``): a latent Gaussian field pushed through an algebraic-tailed quantile function.

x_i = F⁻¹(Φ(z_i/s)) / σ_k with F⁻¹(u) = v/(1 − |v|^k)^{1/k}, v = 2u − 1 = erf(z/(s√2)).

Moments in closed form [derived]: with t = |v|^k, E|F⁻¹|^p = B((p+1)/k, 1 − p/k)/k, finite iff
k > p. So σ_k² = B(3/k, 1 − 2/k)/k (k > 2) and κ = [B(5/k, 1 − 4/k)/k]/σ_k⁴ (k > 4; inf else).
Tails P(|X| > x) ~ x^{−k}; k → ∞ gives a uniform marginal.

Convention:
    Samples (n, L) or (n, L, L) (row-major) on ``generator.device``. The latent field is
    standardised by its realised site variance s² before Φ. ``standardise="exact"``
    (default) divides by the exact σ_k (unit variance); ``"empirical"`` (compat,
    leonlufkin/Localization) divides by the empirical std of each drawn batch (seed- and
    batch-size-dependent scale). ``covariance()`` is the exact covariance under
    ``"exact"``: Σ_ij = E[f(u) f(v)], corr(u, v) = Ĉ_ij/s², by 2D Gauss–Hermite (150² nodes,
    ~1e-8 relative) once per distinct correlation value (⌊L/2⌋ + 1 of them, periodic 1D).
"""
from __future__ import annotations

import math

import torch
from scipy.special import beta as beta_fn

from .latent import CHUNK, LatentField
from .quadrature import gaussian_expectation_2d

__all__ = ["KurK", "norta_marginal_kurtosis", "kur_quantile", "kur_variance"]


def kur_quantile(u: torch.Tensor, k: float) -> torch.Tensor:
    """F⁻¹(u) = v/(1 − |v|^k)^{1/k}, v = 2u − 1 (the algebraic quantile function)."""
    v = 2 * u - 1
    return v / (1 - v.abs() ** k) ** (1.0 / k)


def _kur_of_gaussian(z: torch.Tensor, k: float) -> torch.Tensor:
    """F⁻¹(Φ(z)) for standard-normal z, accurate in the tails (1 − |v| = erfc(|z|/√2))."""
    e = torch.special.erfc(z.abs() / math.sqrt(2.0))  # 1 − |v|
    one_minus_vk = -torch.expm1(k * torch.log1p(-e))  # 1 − |v|^k
    return torch.sign(z) * (1 - e) / one_minus_vk ** (1.0 / k)


def kur_variance(k: float) -> float:
    """σ_k² = E[F⁻¹(U)²] = B(3/k, 1 − 2/k)/k (k > 2)."""
    if not k > 2:
        raise ValueError(f"k must be > 2 for a finite variance, got {k!r}")
    return float(beta_fn(3.0 / k, 1.0 - 2.0 / k) / k)


def norta_marginal_kurtosis(k: float) -> float:
    """Marginal kurtosis of Kur(k): [B(5/k, 1 − 4/k)/k]/σ_k⁴ for k > 4, ``inf`` for k ≤ 4.

    For k ≤ 4 the fourth moment diverges and a sample kurtosis grows with the sample size.
    """
    if not k > 2:
        raise ValueError(f"k must be > 2, got {k!r}")
    if k <= 4:
        return math.inf
    return float(beta_fn(5.0 / k, 1.0 - 4.0 / k) / k) / kur_variance(k) ** 2


class KurK:
    """Kur(k) NORTA field: algebraic-tailed marginal, latent Gaussian correlations.

    Parameters
    ----------
    L, xi, dim, boundary, extensive, jitter, psd
        Latent field, as for :class:`~featlab.data.latent.LatentField` (an indefinite
        periodic kernel is refused unless ``psd="clip"``).
    k : float
        Tail exponent (> 2); kurtosis finite iff k > 4; k → ∞ is uniform.
    standardise : {"exact", "empirical"}
        See the module Convention.

    Attributes
    ----------
    latent : LatentField
    sigma : float
        Exact std σ_k of F⁻¹(U).
    marginal_kurtosis : float
        :func:`norta_marginal_kurtosis` (inf for k ≤ 4).

    Convention:
        x = F⁻¹(Φ(z/s))/σ_k with z the latent field (s² its realised site variance); samples
        (n, L) or (n, L, L) row-major on ``generator.device``; ``covariance()`` exact under
        ``standardise="exact"`` (see the module docstring).
    """

    def __init__(self, L: int, xi: float, k: float, dim: int = 1, boundary: str = "periodic",
                 extensive: bool = False, standardise: str = "exact", jitter: float | None = None,
                 psd: str = "refuse"):
        if standardise not in ("exact", "empirical"):
            raise ValueError(f"standardise must be 'exact' or 'empirical', got {standardise!r}")
        self.sigma = math.sqrt(kur_variance(k))
        self.k, self.standardise = float(k), standardise
        self.latent = LatentField(L, xi, dim, boundary, extensive, jitter, psd)
        self.L, self.xi, self.dim, self.boundary, self.extensive = L, xi, dim, boundary, extensive
        self.D, self.jitter = self.latent.D, self.latent.jitter
        self._s = math.sqrt(self.latent.site_variance)
        self._cov = None

    @property
    def marginal_kurtosis(self) -> float:
        return norta_marginal_kurtosis(self.k)

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        """Latent samples → Kur(k) samples (before any empirical standardisation)."""
        return _kur_of_gaussian(z / self._s, self.k) / self.sigma

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, chunk_size: int = CHUNK) -> torch.Tensor:
        """n samples (n, L) or (n, L, L) on ``generator.device``."""
        x = self.transform(self.latent.sample(n, generator, dtype=torch.float64, chunk_size=chunk_size))
        if self.standardise == "empirical":
            x = x / x.std()
        return x.to(dtype)

    def covariance(self) -> torch.Tensor:
        """Exact covariance (D, D) float64 (quadrature per distinct latent correlation)."""
        if self._cov is None:
            R = (self.latent.covariance() / self._s**2).clamp(-1.0, 1.0)  # latent correlations
            vals, inv = torch.unique(torch.round(R * 1e12) / 1e12, return_inverse=True)
            k = self.k
            f = lambda u, v: _kur_of_gaussian(u, k) * _kur_of_gaussian(v, k)  # noqa: E731
            S = torch.cat([gaussian_expectation_2d(f, vals[a : a + 32], n=150)  # 32·150² nodes at a time
                           for a in range(0, vals.numel(), 32)]) / self.sigma**2
            S[vals == 1.0] = 1.0  # exact diagonal
            self._cov = S[inv]
        return self._cov.clone()

    def __repr__(self) -> str:
        return (f"KurK(L={self.L}, xi={self.xi}, k={self.k}, dim={self.dim}, boundary={self.boundary!r}, "
                f"standardise={self.standardise!r})")
