"""Latent Gaussian field (spec emergence.md §2.1) and the two Gaussian samplers used by every
data model: circulant FFT (periodic) and dense (Cholesky / eigh square root).

Convention:
    Sites i = 0..L-1 (1D); in 2D site (row, col) is flattened row-major, i = row·L + col,
    so the 2D covariance is kron(C_1D, C_1D). Covariance C_ij = exp(-d(i,j)²/ξ²) (ξ², not
    2ℓ²), with d the wrapped distance min(|i-j|, L-|i-j|) for ``boundary="periodic"``
    (featlab default) or |i-j| for ``"open"`` (the reference default). ξ is in sites unless
    ``extensive=True`` (ξ ← ξ·L, L the linear size also in 2D). Samples are (n, L) in 1D and
    (n, L, L) in 2D, drawn on ``generator.device`` (CPU when None). ``covariance()`` is
    always the covariance the sampler *realises* (float64, CPU).

Convention (PSD rule, spec §2.1):
    A covariance whose spectrum has an eigenvalue below −PSD_RTOL·λ_max (float round-off)
    is *indefinite*: the requested field does not exist. ``psd="refuse"`` (default) raises
    :class:`IndefiniteCovarianceError` (a ValueError) naming the geometry, the most negative
    eigenvalue and what would work. ``psd="clip"`` (opt-in) clips the negative eigenvalues
    to 0, warns, and records ``cov_error`` = max |realised − requested| over the entries.
    Round-off negatives are clipped in both modes. The wrapped periodic Gaussian kernel is
    indefinite once ξ is not small against L (L = 20, ξ = 10: λ_min = −0.40 in 1D, −5.96 in
    2D); open boundaries are always realisable (Cholesky with the smallest jitter that works).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

__all__ = [
    "latent_covariance",
    "distance_matrix",
    "LatentField",
    "CirculantGaussian",
    "FFTBackend",
    "resolve_fft_backend",
    "DenseGaussian",
    "JITTERS",
    "check_geometry",
    "PSD_RTOL",
    "PSD_CHOICES",
    "IndefiniteCovarianceError",
    "Spectrum",
    "latent_spectrum",
    "indefinite_message",
]

#: Jitters tried in order by the open-boundary Cholesky sampler; the first that factorises wins.
JITTERS = (0.0, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3)
CHUNK = 2**14
#: Negative eigenvalues with |λ| <= PSD_RTOL·λ_max are float round-off and clipped silently
#: (spec §2.1; the same order as scipy.stats.multivariate_normal's PSD test, 1e6·eps).
PSD_RTOL = 1e-10
#: ``psd`` choices: refuse an indefinite covariance (default) or clip its negative eigenvalues.
PSD_CHOICES = ("refuse", "clip")


class IndefiniteCovarianceError(ValueError):
    """A requested covariance is not positive semi-definite beyond round-off (``psd="refuse"``)."""


@dataclass(frozen=True)
class Spectrum:
    """Eigenvalue summary of a requested covariance (jitter included).

    Attributes
    ----------
    lam_min, lam_max : float
        Smallest and largest eigenvalue.
    n_negative : int
        Eigenvalues below −PSD_RTOL·lam_max (round-off excluded).
    D : int
        Matrix size.
    cov_error : float
        max_ij |C_realised − C_requested| after clipping every negative eigenvalue to 0
        (round-off size when ``ok``).
    """

    lam_min: float
    lam_max: float
    n_negative: int
    D: int
    cov_error: float

    @property
    def ok(self) -> bool:
        """True iff the covariance is PSD up to round-off."""
        return self.n_negative == 0


def _check_psd_choice(psd: str) -> None:
    if psd not in PSD_CHOICES:
        raise ValueError(f"psd must be one of {', '.join(PSD_CHOICES)}, got {psd!r}")


def _spectrum_of(lam: torch.Tensor, cov_error: float) -> Spectrum:
    top = max(float(lam.max()), 0.0)
    return Spectrum(lam_min=float(lam.min()), lam_max=float(lam.max()),
                    n_negative=int((lam < -PSD_RTOL * top).sum()), D=int(lam.numel()), cov_error=cov_error)


def _circulant_spectrum(img: torch.Tensor, jitter: float = 0.0) -> tuple[torch.Tensor, Spectrum]:
    """(λ, Spectrum): λ = Re FFT(first-row image) + jitter; cov_error from the clipped λ."""
    dims = tuple(range(-img.dim(), 0))
    lam = torch.fft.fftn(img, dim=dims).real + float(jitter)
    diff = torch.fft.ifftn(lam.clamp(min=0.0) - lam, dim=dims).real  # first row of C_eff - C
    return lam, _spectrum_of(lam, float(diff.abs().max()))


def _first_row_1d(L: int, xi_eff: float) -> torch.Tensor:
    k = torch.arange(L, dtype=torch.float64)
    return torch.exp(-(torch.minimum(k, L - k) ** 2) / xi_eff**2)  # (L,) first row of C_1D


def _periodic_image(L: int, xi_eff: float, dim: int) -> torch.Tensor:
    c1 = _first_row_1d(L, xi_eff)
    return c1 if dim == 1 else torch.outer(c1, c1)  # row-major first row of kron


def latent_spectrum(L: int, xi: float, dim: int = 1, boundary: str = "periodic", extensive: bool = False,
                    jitter: float | None = None) -> Spectrum:
    """Spectrum of the requested latent covariance C (+ εI), without building a sampler.

    Periodic: the eigenvalues Re FFT of the first row (O(D log D)), ``jitter`` (None = 0)
    added. Open: always realisable (the Cholesky sampler adds the smallest jitter that
    factorises), reported from ``eigvalsh`` of C + εI (O(D³); open fields are small).
    """
    check_geometry(L, dim, boundary)
    if not xi > 0:
        raise ValueError(f"xi must be > 0, got {xi!r}")
    xi_eff = xi * L if extensive else xi
    eps = float(jitter or 0.0)
    if boundary == "periodic":
        return _circulant_spectrum(_periodic_image(L, xi_eff, dim), eps)[1]
    lam = torch.linalg.eigvalsh(latent_covariance(L, xi, dim, boundary, extensive)
                                + eps * torch.eye(L**dim, dtype=torch.float64))
    return Spectrum(lam_min=float(lam.min()), lam_max=float(lam.max()), n_negative=0, D=L**dim, cov_error=0.0)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _apply_psd_rule(sp: Spectrum, psd: str, what: str) -> None:
    """Refuse (``psd="refuse"``) or warn about (``"clip"``) an indefinite spectrum; no-op when PSD.

    ``what`` names the matrix in the message ("covariance", "circulant covariance"); the caller
    clips. The stack level points at the constructor's caller (two frames up).
    """
    if sp.ok:
        return
    msg = (f"{what} is not positive semi-definite: most negative eigenvalue {_fmt(sp.lam_min)} "
           f"({_fmt(sp.lam_min / sp.lam_max)} x lambda_max, {sp.n_negative} of {sp.D} negative); "
           f"clipping changes it by up to {_fmt(sp.cov_error)}")
    if psd == "refuse":
        raise IndefiniteCovarianceError(msg + "; pass psd='clip' to clip the negative eigenvalues")
    warnings.warn(msg + " (psd='clip': clipped)", stacklevel=3)


def _periodic_ok(L: int, xi_eff: float, dim: int, eps: float) -> bool:
    """PSD test of the periodic kernel from the 1D spectrum (the 2D spectrum is its outer product)."""
    lam1 = torch.fft.fft(_first_row_1d(L, xi_eff)).real
    lam = (lam1 if dim == 1 else torch.outer(lam1, lam1)) + eps
    return bool((lam >= -PSD_RTOL * max(float(lam.max()), 0.0)).all())


def realisable_alternatives(L: int, xi: float, dim: int, extensive: bool, jitter: float | None,
                            prefix: str = "") -> list[str]:
    """What would make the periodic latent kernel at (L, ξ, dim) PSD: open boundaries, the
    largest ξ' <= ξ and the smallest L' >= L found by a scan (1% steps in ξ, unit steps in L),
    and the jitter that lifts λ_min. ``prefix`` is put before each field name (``"data."``)."""
    eps = float(jitter or 0.0)
    xi_eff = xi * L if extensive else xi
    out = [f"{prefix}boundary=open"]
    for f in np.arange(0.99, 0.0, -0.01):                 # largest xi' = f xi (1% steps)
        if _periodic_ok(L, xi_eff * f, dim, eps):
            out.append(f"{prefix}xi <= {_fmt(xi * f)}")
            break
    if not extensive:
        for L2 in range(L + 1, 20 * L + 1):
            if _periodic_ok(L2, xi_eff, dim, eps):
                out.append(f"{prefix}L >= {L2}")
                break
    lam0 = _circulant_spectrum(_periodic_image(L, xi_eff, dim), 0.0)[1]
    need = -lam0.lam_min * (1 + 1e-6) + PSD_RTOL * lam0.lam_max
    out.append(f"{prefix}jitter >= {_fmt(need)} (eps I; the reference adds 1e-3)")
    return out


def indefinite_message(L: int, xi: float, dim: int, boundary: str, extensive: bool, jitter: float | None,
                       spec: Spectrum, prefix: str = "") -> str:
    """One-line description of an indefinite latent kernel and what would work (field names
    prefixed by ``prefix``, e.g. ``"data."`` for a config error)."""
    xi_txt = f"xi={xi:g}" + (f" x L = {xi * L:g} sites (extensive)" if extensive else "")
    eps = f", jitter={jitter:g}" if jitter else ""
    return (f"the latent kernel exp(-d^2/xi^2) at L={L}, {xi_txt}, dim={dim}, boundary={boundary}{eps} "
            f"is not positive semi-definite: most negative eigenvalue {_fmt(spec.lam_min)} "
            f"({_fmt(spec.lam_min / spec.lam_max)} x lambda_max; {spec.n_negative} of {spec.D} negative); "
            f"clipping would change the covariance by up to {_fmt(spec.cov_error)}; what would work: "
            + ", ".join(realisable_alternatives(L, xi, dim, extensive, jitter, prefix))
            + f"; or {prefix}psd=clip to clip the negative eigenvalues anyway")


class FFTBackend(str, Enum):
    """How :meth:`CirculantGaussian.transform` computes its real FFTs: the same linear map
    (tested to float round-off, on basis vectors and on shared noise), different cost.

    TORCH
        ``torch.fft`` on the tensor's device: the path for CUDA generators (GPU data stay on
        the GPU) and for dtypes numpy lacks (half, bfloat16) or tensors that require grad.
        On CPU it costs about twice the CPU time of SCIPY at small L, part of it in helper
        threads (measured at 2D L = 20, float32: 3.6 vs 1.8 µs CPU per sample, torch 2.13).
    SCIPY
        ``scipy.fft.rfftn``/``irfftn`` (pocketfft, one worker, GIL released) on a zero-copy
        numpy view of the CPU noise; float32 stays float32. A draw of at most ``chunk_size``
        samples is one rfftn and one irfftn call whose result is returned without a copy.
        CPU float32/float64 only.
    """

    TORCH = "torch"
    SCIPY = "scipy"


def resolve_fft_backend(backend: str | FFTBackend, eps: torch.Tensor) -> FFTBackend:
    """``"auto"``: SCIPY for CPU float32/float64 noise without grad, else TORCH."""
    if backend == "auto":
        ok = eps.device.type == "cpu" and eps.dtype in (torch.float32, torch.float64) and not eps.requires_grad
        return FFTBackend.SCIPY if ok else FFTBackend.TORCH
    try:
        b = FFTBackend(backend)
    except ValueError:
        raise ValueError(f"backend: allowed auto, torch, scipy (got {backend!r})") from None
    if b is FFTBackend.SCIPY and (eps.device.type != "cpu" or eps.dtype not in (torch.float32, torch.float64)):
        raise ValueError(f"backend: scipy needs CPU float32/float64 noise (got {eps.device} {eps.dtype})")
    return b


def check_geometry(L: int, dim: int, boundary: str) -> None:
    """Validate the common geometry arguments (one-line ValueErrors)."""
    if not (isinstance(L, int) and L >= 1):
        raise ValueError(f"L must be a positive int, got {L!r}")
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim!r}")
    if boundary not in ("periodic", "open"):
        raise ValueError(f"boundary must be 'periodic' or 'open', got {boundary!r}")


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def distance_matrix(L: int, boundary: str = "periodic") -> torch.Tensor:
    """(L, L) float64 site distances: wrapped min(|i-j|, L-|i-j|) (periodic) or |i-j| (open)."""
    check_geometry(L, 1, boundary)
    i = torch.arange(L, dtype=torch.float64)
    d = (i[:, None] - i[None, :]).abs()
    return torch.minimum(d, L - d) if boundary == "periodic" else d


def latent_covariance(L: int, xi: float, dim: int = 1, boundary: str = "periodic",
                      extensive: bool = False) -> torch.Tensor:
    """Dense latent covariance C_ij = exp(-d(i,j)²/ξ²), float64 (D, D), D = L**dim.

    Parameters
    ----------
    L : int
        Linear size.
    xi : float
        Correlation length in sites (> 0); multiplied by L when ``extensive``.
    dim : {1, 2}
        2D is kron(C_1D, C_1D) under row-major flattening.
    boundary : {"periodic", "open"}
    extensive : bool
        The reference's ``--extensivexis``: ξ ← ξ·L.

    Returns
    -------
    Tensor (D, D) float64. No jitter is added (see :class:`LatentField`).

    Convention:
        Row-major 2D flattening i = row·L + col, i.e. C_2D[(r1,c1),(r2,c2)] =
        exp(-(d(r1,r2)² + d(c1,c2)²)/ξ²).
    """
    check_geometry(L, dim, boundary)
    if not xi > 0:
        raise ValueError(f"xi must be > 0, got {xi!r}")
    xi_eff = xi * L if extensive else xi
    C1 = torch.exp(-distance_matrix(L, boundary) ** 2 / xi_eff**2)  # (L, L)
    return C1 if dim == 1 else torch.kron(C1, C1)


def _circulant_from_image(img: torch.Tensor) -> torch.Tensor:
    """Dense (D, D) matrix of the (block-)circulant operator whose first row is ``img``."""
    L = img.shape[0]
    k = torch.arange(L)
    off = (k[None, :] - k[:, None]) % L  # (L, L): j - i mod L
    if img.dim() == 1:
        return img[off]
    # 2D: C[(r1,c1),(r2,c2)] = img[(r2-r1)%L, (c2-c1)%L]
    C = img[off[:, None, :, None], off[None, :, None, :]]  # (L_r1, L_c1, L_r2, L_c2)
    return C.reshape(L * L, L * L)


class CirculantGaussian:
    """Zero-mean Gaussian with a (block-)circulant covariance, sampled by FFT in O(D log D).

    Parameters
    ----------
    row_image : Tensor (L,) or (L, L)
        First row of the covariance (1D) or the first row reshaped row-major to (L, L) (2D).
        Must be symmetric under k → -k (a real symmetric circulant).
    jitter : float
        Added to every eigenvalue (εI is circulant); default 0.
    psd : {"refuse", "clip"}
        What to do when Re FFT(row_image) + jitter has an eigenvalue below −PSD_RTOL·λ_max
        (module Convention): raise :class:`IndefiniteCovarianceError` (default) or clip to 0
        with a warning. Round-off negatives are clipped silently in both modes.

    Attributes
    ----------
    lam : Tensor (L,) or (L, L) float64
        Eigenvalues Re FFT(row_image) + jitter, clipped at 0.
    n_clipped : int
        How many eigenvalues were negative before clipping (round-off included).
    spectrum : Spectrum
        λ_min, λ_max, the negatives beyond round-off and ``cov_error`` = max |C_eff − C|.

    Convention:
        x = IFFT(√λ₊ ⊙ FFT(ε)), ε ~ N(0, I) real, computed with rfft/irfft (identical since √λ₊
        is real and even); Cov(x) = C_eff = F⁻¹ diag(λ₊) F, returned by ``covariance()``.
        Eigenvalue clipping is the spec's matrix-square-root rule (clip negatives to 0); it
        is silent only for round-off (see the module's PSD rule). On CPU (float32/float64) the FFTs are done by scipy.fft (:class:`FFTBackend`), but ε
        is still ``torch.randn`` from the generator: the random stream is unchanged and a seed
        gives the samples of the torch.fft path up to float round-off (~1e-6 in float32).
    """

    def __init__(self, row_image: torch.Tensor, jitter: float = 0.0, psd: str = "refuse"):
        _check_psd_choice(psd)
        img = torch.as_tensor(row_image, dtype=torch.float64).cpu()
        if img.dim() not in (1, 2) or (img.dim() == 2 and img.shape[0] != img.shape[1]):
            raise ValueError(f"row_image must be (L,) or (L, L), got shape {tuple(img.shape)}")
        self.shape = tuple(img.shape)
        self.dims = tuple(range(-img.dim(), 0))
        lam, self.spectrum = _circulant_spectrum(img, jitter)
        _apply_psd_rule(self.spectrum, psd, "circulant covariance")
        self.psd = psd
        self.n_clipped = int((lam < 0).sum())
        self.lam = lam.clamp(min=0.0)
        self.D = img.numel()
        self._sqrt_half: dict = {}
        self._sqrt_np: dict = {}

    @property
    def row_image(self) -> torch.Tensor:
        """First row of the realised covariance C_eff, shaped like the input image."""
        return torch.fft.ifftn(self.lam, dim=self.dims).real

    def covariance(self) -> torch.Tensor:
        """C_eff (D, D) float64: the covariance this sampler realises."""
        return _circulant_from_image(self.row_image)

    def _sqrt(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._sqrt_half:
            half = self.lam[..., : self.shape[-1] // 2 + 1].sqrt()
            self._sqrt_half[key] = half.to(device=device, dtype=dtype)
        return self._sqrt_half[key]

    def transform(self, eps: torch.Tensor, chunk_size: int = CHUNK,
                  backend: str | FFTBackend = "auto") -> torch.Tensor:
        """Map white noise ε (n, *shape) to the field, in chunks of ``chunk_size`` (memory only).

        ``backend``: ``"auto"`` (scipy.fft for CPU float32/float64, torch.fft otherwise) or an
        :class:`FFTBackend`; all give the same map up to float round-off.
        """
        if resolve_fft_backend(backend, eps) is FFTBackend.SCIPY:
            return self._transform_scipy(eps, chunk_size)
        return self._transform_torch(eps, chunk_size)

    def _transform_torch(self, eps: torch.Tensor, chunk_size: int) -> torch.Tensor:
        s = self._sqrt(eps.device, eps.dtype)
        out = torch.empty_like(eps)
        L = self.shape[-1]
        for a in range(0, eps.shape[0], chunk_size):
            Y = s * torch.fft.rfftn(eps[a : a + chunk_size], dim=self.dims)  # (c, [L,] L//2+1)
            if len(self.shape) == 2:
                # = irfft2(Y); done as a complex ifft over rows then irfft over columns, which
                # is ~2x faster than torch's multi-dim c2r on CPU (measured, torch 2.13 + MKL)
                Y = torch.fft.ifft(Y, dim=-2)
            out[a : a + chunk_size] = torch.fft.irfft(Y, n=L, dim=-1)
        return out

    def _transform_scipy(self, eps: torch.Tensor, chunk_size: int) -> torch.Tensor:
        import scipy.fft as sfft

        e = eps.detach().numpy()                                   # zero-copy view
        key = e.dtype
        if key not in self._sqrt_np:
            self._sqrt_np[key] = self._sqrt(torch.device("cpu"), eps.dtype).numpy()
        s = self._sqrt_np[key]                                     # ([L,] L//2+1) real
        n = e.shape[0]
        block = max(1, int(chunk_size))
        if n <= block:  # one block: no output copy (a fresh output array costs page faults)
            if n == 0:
                return torch.from_numpy(np.empty_like(e))
            Y = sfft.rfftn(e, axes=self.dims, workers=1)           # (n, [L,] L//2+1) complex
            Y *= s
            return torch.from_numpy(sfft.irfftn(Y, s=self.shape, axes=self.dims, overwrite_x=True, workers=1))
        out = np.empty_like(e)
        for a in range(0, n, block):
            Y = sfft.rfftn(e[a : a + block], axes=self.dims, workers=1)
            Y *= s
            out[a : a + block] = sfft.irfftn(Y, s=self.shape, axes=self.dims, overwrite_x=True, workers=1)
        return torch.from_numpy(out)

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, chunk_size: int = CHUNK) -> torch.Tensor:
        """n samples (n, *shape) on ``generator.device``; ``chunk_size`` never changes the values."""
        eps = torch.randn((int(n),) + self.shape, generator=generator, dtype=dtype,
                          device=_gen_device(generator))
        return self.transform(eps, chunk_size)


class DenseGaussian:
    """Zero-mean Gaussian with a dense covariance: Cholesky factor or symmetric eigh square root.

    Parameters
    ----------
    cov : Tensor (D, D)
        Target covariance (symmetrised, float64).
    shape : tuple
        Output sample shape, e.g. (L,) or (L, L) (row-major).
    method : {"cholesky", "eigh"}
        ``"cholesky"``: exact factor, fails if ``cov`` is not positive definite (use jitter).
        ``"eigh"``: A = V diag(√λ₊) Vᵀ with negative eigenvalues clipped to 0, realising
        V diag(λ₊) Vᵀ. Both cost O(D²) per sample after an O(D³) set-up.
    psd : {"refuse", "clip"}
        ``"eigh"`` only: an eigenvalue below −PSD_RTOL·λ_max raises
        :class:`IndefiniteCovarianceError` (default) or is clipped with a warning
        (round-off is clipped silently). ``spectrum`` records what was found.

    Convention:
        x = A ε with A Aᵀ = realised covariance (``covariance()``), ε ~ N(0, I).
    """

    def __init__(self, cov: torch.Tensor, shape: tuple, method: str = "cholesky", psd: str = "refuse"):
        _check_psd_choice(psd)
        C = torch.as_tensor(cov, dtype=torch.float64).cpu()
        C = 0.5 * (C + C.T)
        self.shape = tuple(shape)
        self.D = C.shape[0]
        if math.prod(self.shape) != self.D:
            raise ValueError(f"shape {self.shape} does not match covariance size {self.D}")
        if method == "cholesky":
            self.A = torch.linalg.cholesky(C)
            self._cov = C
            self.spectrum = None
        elif method == "eigh":
            lam, V = torch.linalg.eigh(C)
            realised = (V * lam.clamp(min=0.0)) @ V.T
            self.spectrum = _spectrum_of(lam, float((realised - C).abs().max()))
            _apply_psd_rule(self.spectrum, psd, "covariance")
            lam = lam.clamp(min=0.0)
            self.A = (V * lam.sqrt()) @ V.T
            self._cov = realised
        else:
            raise ValueError(f"method must be 'cholesky' or 'eigh', got {method!r}")
        self.method, self.psd = method, psd
        self._A: dict = {}

    def covariance(self) -> torch.Tensor:
        """The realised covariance (D, D) float64."""
        return self._cov.clone()

    def transform(self, eps: torch.Tensor, chunk_size: int = CHUNK) -> torch.Tensor:
        """Map white noise ε (n, *shape) to samples, in chunks (memory only)."""
        key = (str(eps.device), eps.dtype)
        if key not in self._A:
            self._A[key] = self.A.to(device=eps.device, dtype=eps.dtype)
        At = self._A[key].T
        flat = eps.reshape(eps.shape[0], self.D)
        out = torch.empty_like(flat)
        for a in range(0, flat.shape[0], chunk_size):
            out[a : a + chunk_size] = flat[a : a + chunk_size] @ At
        return out.reshape(eps.shape)

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, chunk_size: int = CHUNK) -> torch.Tensor:
        eps = torch.randn((int(n),) + self.shape, generator=generator, dtype=dtype,
                          device=_gen_device(generator))
        return self.transform(eps, chunk_size)


class LatentField:
    """The latent Gaussian field z ~ N(0, C) of spec §2.1.

    Parameters
    ----------
    L : int
        Linear size; D = L**dim.
    xi : float
        Correlation length in sites (ξ·L if ``extensive``).
    dim : {1, 2}
    boundary : {"periodic", "open"}
        ``"periodic"`` (default): circulant FFT sampler, no jitter unless given. ``"open"``:
        cached Cholesky of C + εI with the smallest ε in :data:`JITTERS` that factorises, or
        the given ``jitter`` (the reference uses 1e-3).
    extensive : bool
        ξ ← ξ·L (the reference's ``--extensivexis``).
    jitter : float or None
        Explicit εI; recorded as ``.jitter``.
    psd : {"refuse", "clip"}
        Periodic C + εI indefinite beyond round-off (module PSD rule): ``"refuse"``
        (default) raises :class:`IndefiniteCovarianceError` naming L, ξ, dim, boundary, the
        most negative eigenvalue and what would work; ``"clip"`` clips the negative
        eigenvalues, warns, and records the error in ``cov_error``.

    Attributes
    ----------
    D : int
    xi_eff : float
        ξ in sites after the extensive flag.
    jitter : float
        ε actually used.
    site_variance : float
        s² = diagonal of the realised covariance (constant over sites).
    spectrum : Spectrum
        Of the requested C + εI (:func:`latent_spectrum`).
    cov_error : float
        max |realised − requested C + εI| over the entries: round-off unless ``psd="clip"``
        clipped a genuinely indefinite kernel.
    sampler : CirculantGaussian or DenseGaussian

    Convention:
        See the module docstring: C = exp(-d²/ξ²), row-major 2D flattening, samples (n, L) or
        (n, L, L) on ``generator.device``; ``covariance()`` = C_eff (periodic, + εI if given)
        or C + εI (open).
    """

    marginal_kurtosis = 3.0

    def __init__(self, L: int, xi: float, dim: int = 1, boundary: str = "periodic",
                 extensive: bool = False, jitter: float | None = None, psd: str = "refuse"):
        check_geometry(L, dim, boundary)
        _check_psd_choice(psd)
        if not xi > 0:
            raise ValueError(f"xi must be > 0, got {xi!r}")
        if jitter is not None and not jitter >= 0:
            raise ValueError(f"jitter must be None or >= 0, got {jitter!r}")
        self.L, self.xi, self.dim, self.boundary, self.extensive = L, xi, dim, boundary, extensive
        self.D = L**dim
        self.xi_eff = xi * L if extensive else xi
        self.shape = (L,) * dim
        self.psd = psd
        if boundary == "periodic":
            img = _periodic_image(L, self.xi_eff, dim)
            self.jitter = float(jitter or 0.0)
            spec = _circulant_spectrum(img, self.jitter)[1]
            if not spec.ok:
                msg = indefinite_message(L, xi, dim, boundary, extensive, jitter, spec)
                if psd == "refuse":
                    raise IndefiniteCovarianceError(msg)
                warnings.warn(f"psd='clip': {msg.split('; what would work')[0]}; clipped", stacklevel=2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.sampler = CirculantGaussian(img, jitter=self.jitter, psd="clip")
            self.spectrum, self.cov_error = spec, spec.cov_error
        else:
            C = latent_covariance(L, xi, dim, boundary, extensive)
            eye = torch.eye(self.D, dtype=torch.float64)
            for eps in ((jitter,) if jitter is not None else JITTERS):
                _, info = torch.linalg.cholesky_ex(C + eps * eye)
                if int(info) == 0:
                    break
            else:
                raise ValueError(f"jitter={jitter!r}: C + jitter·I is not positive definite")
            self.jitter = float(eps)
            self.sampler = DenseGaussian(C + eps * eye, self.shape, method="cholesky")
            lam = torch.linalg.eigvalsh(C + eps * eye)
            self.spectrum = Spectrum(lam_min=float(lam.min()), lam_max=float(lam.max()), n_negative=0,
                                     D=self.D, cov_error=0.0)
            self.cov_error = 0.0
        self.site_variance = float(self.covariance_diagonal())

    def covariance_diagonal(self) -> float:
        """s² = C_eff[0, 0] (periodic) or 1 + ε (open)."""
        if isinstance(self.sampler, CirculantGaussian):
            return float(self.sampler.row_image.reshape(-1)[0])
        return float(self.sampler.covariance()[0, 0])

    def covariance(self) -> torch.Tensor:
        """Realised covariance (D, D) float64 on CPU."""
        return self.sampler.covariance()

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, chunk_size: int = CHUNK) -> torch.Tensor:
        """n latent samples, (n, L) or (n, L, L), on ``generator.device``.

        ``chunk_size`` bounds the FFT/matmul working memory and never changes the values.
        """
        return self.sampler.sample(n, generator, dtype=dtype, chunk_size=chunk_size)

    def __repr__(self) -> str:
        return (f"LatentField(L={self.L}, xi={self.xi}, dim={self.dim}, boundary={self.boundary!r}, "
                f"extensive={self.extensive}, jitter={self.jitter}, psd={self.psd!r})")
