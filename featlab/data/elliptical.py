"""Elliptical and Student-t data models (spec emergence.md §2.6; leonlufkin/Localization).

Both are scale mixtures of the latent Gaussian direction, so E[x | w·x] is linear and they
never localise (the follow-up's "Proposition 3.3") — the negative control for kurtosis.

Convention:
    Samples (n, L) or (n, L, L) (row-major) on ``generator.device``; the class covariance
    after rescaling equals the latent covariance the sampler realises (``covariance()``:
    C_eff periodic, C + εI open). The FFT / Cholesky square root replaces the follow-up's
    real-Fourier-basis square root (same distribution; parity is distributional only).
"""
from __future__ import annotations

import math

import torch
from scipy import integrate, stats

from .latent import CHUNK, LatentField

__all__ = ["Elliptical", "StudentT", "weird_radius"]


def weird_radius(u: torch.Tensor) -> torch.Tensor:
    """The follow-up's "weird" radius quantile F_r⁻¹(u) = −½·ln(2/(u+1) − 1) + 2 = 2 + artanh(u)."""
    return -0.5 * torch.log(2.0 / (u + 1.0) - 1.0) + 2.0


class Elliptical:
    """Elliptical field x = c·r·A ε/‖ε‖, A Aᵀ = C, rescaled to covariance C.

    Parameters
    ----------
    L, xi, dim, boundary, extensive, jitter, psd
        Latent field (:class:`~featlab.data.latent.LatentField`; an indefinite periodic
        kernel is refused unless ``psd="clip"``).
    radius : {"weird", "shell"}
        ``"weird"``: r = 2 + artanh(u), u ~ U(0, 1) (follow-up); ``"shell"``: r ≡ 1.

    Attributes
    ----------
    r2 : float
        E[r²] (quadrature for "weird").
    scale : float
        c = √(D/E[r²]), so Cov(x) = A Aᵀ exactly (E[uuᵀ] = I/D on the sphere).
    marginal_kurtosis : float
        3·D/(D+2)·E[r⁴]/E[r²]².

    Convention:
        See the module docstring; each class is rescaled to unit std (exact, not empirical).
    """

    def __init__(self, L: int, xi: float, radius: str = "weird", dim: int = 1, boundary: str = "periodic",
                 extensive: bool = False, jitter: float | None = None, psd: str = "refuse"):
        if radius not in ("weird", "shell"):
            raise ValueError(f"radius must be 'weird' or 'shell', got {radius!r}")
        self.latent = LatentField(L, xi, dim, boundary, extensive, jitter, psd)
        self.L, self.xi, self.dim, self.boundary, self.extensive = L, xi, dim, boundary, extensive
        self.D, self.jitter, self.radius = self.latent.D, self.latent.jitter, radius
        if radius == "shell":
            self.r2, r4 = 1.0, 1.0
        else:
            self.r2 = integrate.quad(lambda u: (2 + math.atanh(u)) ** 2, 0, 1, limit=200)[0]
            r4 = integrate.quad(lambda u: (2 + math.atanh(u)) ** 4, 0, 1, limit=200)[0]
        self.scale = math.sqrt(self.D / self.r2)
        self.marginal_kurtosis = 3.0 * self.D / (self.D + 2) * r4 / self.r2**2

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, chunk_size: int = CHUNK) -> torch.Tensor:
        """n samples (n, L) or (n, L, L) on ``generator.device``."""
        dev = torch.device("cpu") if generator is None else generator.device
        eps = torch.randn((int(n),) + self.latent.shape, generator=generator, dtype=torch.float64, device=dev)
        dims = tuple(range(1, eps.dim()))
        u = eps / eps.pow(2).sum(dims, keepdim=True).sqrt()  # uniform on the sphere
        if self.radius == "shell":
            r = torch.ones(int(n), dtype=torch.float64, device=dev)
        else:
            r = weird_radius(torch.rand(int(n), generator=generator, dtype=torch.float64, device=dev))
        x = self.latent.sampler.transform(u, chunk_size) * (self.scale * r).reshape((-1,) + (1,) * len(dims))
        return x.to(dtype)

    def covariance(self) -> torch.Tensor:
        """(D, D) float64: the realised latent covariance."""
        return self.latent.covariance()


class StudentT:
    """Multivariate Student-t field with covariance C: x = √(df/χ²_df)·z, z ~ N(0, C·(df−2)/df).

    Parameters
    ----------
    L, xi, dim, boundary, extensive, jitter, psd
        Latent field (:class:`~featlab.data.latent.LatentField`; an indefinite periodic
        kernel is refused unless ``psd="clip"``).
    df : float
        Degrees of freedom (> 2 for a finite covariance); default 3 (follow-up).

    Attributes
    ----------
    marginal_kurtosis : float
        3 + 6/(df − 4) for df > 4, inf otherwise.

    Convention:
        χ²_df is drawn as a sum of df squared normals for integer df, otherwise by the
        inverse CDF of uniforms from the generator (computed on CPU).
    """

    def __init__(self, L: int, xi: float, df: float = 3, dim: int = 1, boundary: str = "periodic",
                 extensive: bool = False, jitter: float | None = None, psd: str = "refuse"):
        if not df > 2:
            raise ValueError(f"df must be > 2 for a finite covariance, got {df!r}")
        self.latent = LatentField(L, xi, dim, boundary, extensive, jitter, psd)
        self.L, self.xi, self.dim, self.boundary, self.extensive = L, xi, dim, boundary, extensive
        self.D, self.jitter, self.df = self.latent.D, self.latent.jitter, float(df)
        self.marginal_kurtosis = 3.0 + 6.0 / (df - 4) if df > 4 else math.inf

    def _chi2(self, n: int, generator, dev) -> torch.Tensor:
        if float(self.df).is_integer():
            g = torch.randn(n, int(self.df), generator=generator, dtype=torch.float64, device=dev)
            return g.pow(2).sum(1)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=dev)
        return torch.as_tensor(stats.chi2.ppf(u.cpu().numpy(), self.df), device=dev)

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, chunk_size: int = CHUNK) -> torch.Tensor:
        """n samples (n, L) or (n, L, L) on ``generator.device``."""
        dev = torch.device("cpu") if generator is None else generator.device
        z = self.latent.sample(int(n), generator, dtype=torch.float64, chunk_size=chunk_size)
        w = torch.sqrt((self.df - 2) / self._chi2(int(n), generator, dev))  # √(df/χ²)·√((df−2)/df)
        return (z * w.reshape((-1,) + (1,) * self.dim)).to(dtype)

    def covariance(self) -> torch.Tensor:
        """(D, D) float64: the realised latent covariance."""
        return self.latent.covariance()
