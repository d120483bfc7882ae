"""Gaussian clone of a data model (spec emergence.md §2.3): N(0, Σ) with the model's covariance.

For the NLGP, Σ̃_ij = (2/(πγ))·arcsin(g²Ĉ_ij/(1 + g²s²)) (original convention) on the *realised*
latent covariance Ĉ (s² = Ĉ_ii). Σ̃ is PSD at every gain (entrywise arcsin of t·Ĉ, |t| < 1, is a
positive series of Hadamard powers), and circulant when Ĉ is, so the FFT sampler is used.

Reference bug (sgoldt/conv_emerge ``tasks.build_nlgp_mixture``): the clone is built with the
unit-variance prefactor on the jittered matrix, arcsin(g²/(1+g²)·(C + εI)_ij). Its diagonal
argument exceeds 1 once g > 1/√ε (≈ 31.6 for ε = 1e-3): arcsin → NaN, NaN samples and the
driver exits ("got some nans"); below that the diagonal is slightly misstated.
``clone_formula="reference"`` reproduces that formula and raises ValueError where it would NaN.
"""
from __future__ import annotations

import math

import torch

from .latent import CHUNK, CirculantGaussian, DenseGaussian, LatentField, _circulant_from_image
from .nlgp import erf_coefficient, nlgp_covariance, nlgp_normaliser

__all__ = ["GaussianClone"]


def _reference_clone(C_hat: torch.Tensor, gain: float, gain_convention: str, jitter: float) -> torch.Tensor:
    """(2/(πγ(g)))·arcsin(g²/(1+g²)·Ĉ), γ at unit variance; raises where the reference NaNs."""
    g = math.sqrt(2.0) * erf_coefficient(gain, gain_convention)  # original-convention gain
    t = g * g / (1 + g * g)
    s2 = float(C_hat.reshape(-1)[0])
    if t * s2 > 1.0:
        raise ValueError(
            f"clone_formula='reference': gain g={g:.6g} (original convention) with latent "
            f"variance 1+eps, eps={s2 - 1:.3g}, exceeds 1/sqrt(eps)={1 / math.sqrt(max(s2 - 1, 1e-300)):.4g}; "
            "arcsin of the diagonal would be NaN (sgoldt/conv_emerge tasks.build_nlgp_mixture); "
            "use clone_formula='exact'")
    gamma = (2.0 / math.pi) * math.asin(t)
    return (2.0 / (math.pi * gamma)) * torch.asin(t * C_hat)


def _is_circulant(cov: torch.Tensor, shape: tuple, rtol: float = 1e-10) -> bool:
    img = cov[0].reshape(shape)
    C = _circulant_from_image(img)
    return bool((C - cov).abs().max() <= rtol * cov.abs().max())


class GaussianClone:
    """Gaussian clone N(0, Σ̃) of the NLGP with the same (L, ξ, g, …), or of any model via :meth:`of`.

    Parameters
    ----------
    L, xi, gain, dim, gain_convention, boundary, extensive, jitter, psd
        As for :class:`~featlab.data.nlgp.NLGP`; the latent field is built identically, so the
        clone matches the NLGP's realised covariance, jitter included, and an indefinite
        latent kernel is refused unless ``psd="clip"``, as for the NLGP.
    clone_formula : {"exact", "reference"}
        ``"exact"`` (default): the arcsine formula on the realised Ĉ with the normaliser of
        ``variance``; finite and PSD at any gain. ``"reference"`` (compat): the reference's
        arcsin(g²/(1+g²)·(C+εI)) with γ(g) of the unit diagonal; raises ValueError naming g
        and ε when g > 1/√ε (where the reference silently produces NaN).
    variance : {"exact", "reference"}
        Normaliser used with ``clone_formula="exact"``, to match ``NLGP(variance=...)``.

    Attributes
    ----------
    sampler : CirculantGaussian (periodic) or DenseGaussian (eigh square root, clipped)
    D : int
    marginal_kurtosis : float
        3 (Gaussian).

    Convention:
        Samples (n, L) or (n, L, L) (row-major) on ``generator.device``. ``covariance()`` is the
        covariance realised by the sampler: Σ̃ with its round-off negative eigenvalues clipped
        to 0 (FFT when circulant, eigh otherwise). ``cov_error``: max |realised − requested|
        of the latent (NLGP clone) or of the model's covariance (:meth:`of`).
    """

    marginal_kurtosis = 3.0

    def __init__(self, L: int, xi: float, gain: float, dim: int = 1, gain_convention: str = "original",
                 boundary: str = "periodic", extensive: bool = False, clone_formula: str = "exact",
                 jitter: float | None = None, variance: str = "exact", psd: str = "refuse"):
        if clone_formula not in ("exact", "reference"):
            raise ValueError(f"clone_formula must be 'exact' or 'reference', got {clone_formula!r}")
        if variance not in ("exact", "reference"):
            raise ValueError(f"variance must be 'exact' or 'reference', got {variance!r}")
        erf_coefficient(gain, gain_convention)  # validates gain and convention
        latent = LatentField(L, xi, dim, boundary, extensive, jitter, psd)
        self.psd, self.cov_error = psd, latent.cov_error
        self.L, self.xi, self.dim, self.boundary, self.extensive = L, xi, dim, boundary, extensive
        self.gain, self.gain_convention = float(gain), gain_convention
        self.clone_formula, self.variance, self.jitter = clone_formula, variance, latent.jitter
        self.D, self.shape = latent.D, latent.shape
        circulant = isinstance(latent.sampler, CirculantGaussian)
        C_hat = latent.sampler.row_image if circulant else latent.covariance()
        if clone_formula == "reference":
            S = _reference_clone(C_hat, gain, gain_convention, latent.site_variance - 1.0)
        else:
            s2 = latent.site_variance if variance == "exact" else 1.0
            S = nlgp_covariance(C_hat, gain, gain_convention, nlgp_normaliser(gain, gain_convention, s2))
        # Σ̃ of a PSD Ĉ is PSD (entrywise arcsin): only round-off negatives can occur here
        self.sampler = (CirculantGaussian(S, psd=psd) if circulant
                        else DenseGaussian(S, self.shape, "eigh", psd=psd))

    @classmethod
    def of(cls, model, psd: str = "refuse") -> "GaussianClone":
        """Clone of any data model: N(0, model.covariance()) with the model's L and dim.

        Uses the FFT sampler if the covariance is (block-)circulant to 1e-10 relative,
        otherwise the eigh square root. A covariance with an eigenvalue below
        −PSD_RTOL·λ_max is refused (``psd="refuse"``) or clipped with a warning
        (``"clip"``); round-off negatives are clipped silently.
        """
        cov = torch.as_tensor(model.covariance(), dtype=torch.float64).cpu()
        self = cls.__new__(cls)
        self.L, self.dim = model.L, model.dim
        self.shape, self.D = (model.L,) * model.dim, model.L**model.dim
        self.xi = getattr(model, "xi", None)
        self.boundary = getattr(model, "boundary", None)
        self.extensive = getattr(model, "extensive", None)
        self.gain = getattr(model, "gain", None)
        self.gain_convention = getattr(model, "gain_convention", None)
        self.clone_formula, self.variance, self.jitter = "of", None, getattr(model, "jitter", None)
        if cov.shape != (self.D, self.D):
            raise ValueError(f"model.covariance() must be ({self.D}, {self.D}), got {tuple(cov.shape)}")
        if _is_circulant(cov, self.shape):
            self.sampler = CirculantGaussian(cov[0].reshape(self.shape), psd=psd)
        else:
            self.sampler = DenseGaussian(cov, self.shape, "eigh", psd=psd)
        self.psd, self.cov_error = psd, self.sampler.spectrum.cov_error
        return self

    def covariance(self) -> torch.Tensor:
        """Realised covariance (D, D) float64 on CPU."""
        return self.sampler.covariance()

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, chunk_size: int = CHUNK) -> torch.Tensor:
        """n samples (n, L) or (n, L, L) on ``generator.device``."""
        return self.sampler.sample(n, generator, dtype=dtype, chunk_size=chunk_size)

    def __repr__(self) -> str:
        return (f"GaussianClone(L={self.L}, xi={self.xi}, gain={self.gain}, dim={self.dim}, "
                f"gain_convention={self.gain_convention!r}, boundary={self.boundary!r}, "
                f"clone_formula={self.clone_formula!r}, jitter={self.jitter})")
