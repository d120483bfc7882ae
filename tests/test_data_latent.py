"""Latent Gaussian field, FFT / dense samplers and quadrature helpers (spec emergence.md §2.1, §11)."""
from __future__ import annotations

import math

import pytest
import torch

from featlab.data.latent import (CirculantGaussian, DenseGaussian, LatentField, distance_matrix,
                                 latent_covariance)
from featlab.data.quadrature import (composite_rule, gaussian_expectation, gaussian_expectation_2d,
                                     hermite_rule)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _exact_cov(sampler, shape):
    """A Aᵀ of the linear sampler, from transforming the identity basis (no Monte Carlo)."""
    D = math.prod(shape)
    A_cols = sampler.transform(torch.eye(D, dtype=torch.float64).reshape((D,) + shape)).reshape(D, D)
    return A_cols.T @ A_cols  # rows of A_cols are A e_i = columns of A


def _emp_cov(x):
    x = x.reshape(x.shape[0], -1).double()
    return x.T @ x / x.shape[0]


# ---------------------------------------------------------------- covariance definition

def test_convention_periodic_distance_is_wrapped_open_is_not():
    d = distance_matrix(6, "periodic")
    assert d[0].tolist() == [0, 1, 2, 3, 2, 1]
    assert distance_matrix(6, "open")[0].tolist() == [0, 1, 2, 3, 4, 5]


def test_convention_xi_squared_not_two_ell_squared():
    C = latent_covariance(10, 2.0)
    assert C[0, 1].item() == pytest.approx(math.exp(-1 / 4))  # exp(-d²/ξ²), not exp(-d²/(2ξ²))
    assert C[0, 9].item() == pytest.approx(math.exp(-1 / 4))  # wrapped


def test_convention_extensive_multiplies_by_L():
    assert torch.allclose(latent_covariance(10, 0.3, extensive=True), latent_covariance(10, 3.0))


def test_convention_kron_row_major():
    L, xi = 5, 1.7
    C1 = latent_covariance(L, xi)
    C2 = latent_covariance(L, xi, dim=2)
    assert torch.allclose(C2, torch.kron(C1, C1))
    d = distance_matrix(L)
    r1, c1, r2, c2 = 1, 4, 3, 0
    want = math.exp(-(d[r1, r2] ** 2 + d[c1, c2] ** 2) / xi**2)
    assert C2[r1 * L + c1, r2 * L + c2].item() == pytest.approx(want)


def test_convention_2d_sampler_row_major_anisotropic():
    # An anisotropic circulant image: correlation along columns (axis -1) only. A sampler that
    # flattened column-major or swapped axes would put the correlation on the rows.
    L = 5
    k = torch.arange(L, dtype=torch.float64)
    c = torch.exp(-torch.minimum(k, L - k) ** 2 / 2.0)
    img = torch.zeros(L, L, dtype=torch.float64)
    img[0] = c  # row offset 0, column offsets
    s = CirculantGaussian(img)
    cov = _exact_cov(s, (L, L))
    assert torch.allclose(cov, s.covariance(), atol=1e-12)
    assert cov[2 * L + 1, 2 * L + 2].item() == pytest.approx(c[1].item())  # same row, next column
    assert abs(cov[1 * L + 2, 2 * L + 2].item()) < 1e-12  # next row: uncorrelated
    x = s.sample(20000, _gen(1), dtype=torch.float64)
    assert (x[:, 1, 2] * x[:, 1, 3]).mean().item() == pytest.approx(c[1].item(), abs=0.03)
    assert abs((x[:, 1, 2] * x[:, 2, 2]).mean().item()) < 0.03


# ---------------------------------------------------------------- FFT sampler

@pytest.mark.parametrize("dim,L,xi", [(1, 16, 2.0), (2, 6, 1.5)])
def test_fft_covariance_is_C_eff_and_C(dim, L, xi):
    f = LatentField(L, xi, dim=dim)
    shape = (L,) * dim
    cov_exact = _exact_cov(f.sampler, shape)  # exactly A Aᵀ
    C_eff = f.covariance()
    assert torch.allclose(cov_exact, C_eff, atol=1e-12)
    # C_eff - C = F⁻¹ diag(λ₊ - λ) F: every entry is bounded by Σ|λ_negative|/D (tiny here)
    C = latent_covariance(L, xi, dim)
    lam = torch.linalg.eigvalsh(C)
    bound = lam.clamp(max=0).abs().sum() / C.shape[0] + 1e-12
    assert (C_eff - C).abs().max() <= bound and bound < 1e-5
    # and Monte Carlo agrees (relative Frobenius, ~sqrt(2/n)·D-scale sampling error)
    x = f.sample(40000, _gen(2), dtype=torch.float64)
    assert x.shape == (40000,) + shape
    err = (_emp_cov(x) - C_eff).norm() / C_eff.norm()
    assert err < 0.02


def test_convention_psd_rule_indefinite_periodic_kernel_is_refused():
    """L = 20, ξ = 10 periodic (the superseded paper preset's class 1): λ_min = −0.399 (1D),
    −5.96 (2D), 198 of 400 negative (spec §2.1)."""
    from featlab.data.latent import IndefiniteCovarianceError, latent_spectrum

    for dim, lam_min in ((1, -0.399), (2, -5.96)):
        sp = latent_spectrum(20, 10.0, dim)
        lam = torch.linalg.eigvalsh(latent_covariance(20, 10.0, dim))  # dense oracle
        assert sp.lam_min == pytest.approx(float(lam.min()), abs=1e-9) and sp.lam_min == pytest.approx(lam_min, abs=5e-3)
        assert not sp.ok
        with pytest.raises(IndefiniteCovarianceError) as e:
            LatentField(20, 10.0, dim=dim)
        msg = str(e.value)
        assert "\n" not in msg
        for part in ("L=20", "xi=10", f"dim={dim}", "boundary=periodic", f"{lam_min:.3g}", "boundary=open",
                     "xi <=", "L >=", "jitter >=", "psd=clip"):
            assert part in msg, part
    assert latent_spectrum(20, 10.0, 2).n_negative == 198
    # every remedy the message names really is PSD
    assert latent_spectrum(20, 2.6, 2).ok and latent_spectrum(90, 10.0, 2).ok and latent_spectrum(20, 10.0, 2, jitter=5.97).ok
    assert latent_spectrum(20, 10.0, 2, boundary="open").ok
    LatentField(20, 10.0, dim=2, boundary="open")  # open boundaries: Cholesky, realisable
    # a kernel known to be PSD (all eigenvalues > 0) is accepted without a warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = LatentField(20, 1.0, dim=2)
    assert f.spectrum.ok and f.spectrum.lam_min > 0.09 and f.cov_error < 1e-12


def test_psd_clip_opt_in_warns_and_records_the_covariance_error():
    with pytest.warns(UserWarning, match="psd='clip'.*L=20, xi=10, dim=2"):
        f = LatentField(20, 10.0, dim=2, psd="clip")
    assert f.sampler.n_clipped == 198 and f.psd == "clip"
    C = latent_covariance(20, 10.0, 2)
    err = float((f.covariance() - C).abs().max())
    assert f.cov_error == pytest.approx(err, rel=1e-9) and err == pytest.approx(0.132, abs=1e-3)
    assert f.site_variance == pytest.approx(1.132, abs=1e-3)          # the measured 1.13
    nn = f.covariance()[0, 1].item() / f.site_variance                 # nearest-neighbour correlation
    assert nn == pytest.approx(0.959, abs=2e-3) and C[0, 1].item() == pytest.approx(0.990, abs=1e-3)
    assert torch.linalg.eigvalsh(f.covariance()).min() > -1e-10     # C_eff is PSD
    assert torch.allclose(_exact_cov(f.sampler, (20, 20)), f.covariance(), atol=1e-10)
    with pytest.raises(ValueError, match="psd"):
        LatentField(8, 1.0, psd="ignore")


def test_roundoff_negatives_are_clipped_silently():
    # L = 100, ξ = 10: λ_min ≈ −1.5e-11 = −8e-13 λ_max, float round-off of the wrapped kernel
    f = LatentField(100, 10.0)
    assert f.sampler.n_clipped > 0 and f.spectrum.ok and f.cov_error < 1e-10


def test_chunk_size_does_not_change_samples():
    f = LatentField(12, 2.0)
    a = f.sample(50, _gen(3), dtype=torch.float64)
    b = f.sample(50, _gen(3), dtype=torch.float64, chunk_size=7)
    assert torch.allclose(a, b, rtol=0, atol=1e-13)  # same noise; batched FFT round-off only
    o = LatentField(12, 2.0, boundary="open")
    a, b = o.sample(50, _gen(3), dtype=torch.float64), o.sample(50, _gen(3), dtype=torch.float64, chunk_size=7)
    assert torch.allclose(a, b, rtol=0, atol=1e-13)


def test_periodic_jitter_adds_eps_identity():
    f0, f1 = LatentField(10, 2.0), LatentField(10, 2.0, jitter=1e-2)
    assert f1.jitter == 1e-2
    assert torch.allclose(f1.covariance(), f0.covariance() + 1e-2 * torch.eye(10), atol=1e-12)
    assert f1.site_variance == pytest.approx(f0.site_variance + 1e-2)


# ---------------------------------------------------------------- open boundaries

def test_open_cholesky_reproduces_C_plus_eps():
    f = LatentField(12, 3.0, boundary="open")
    C = latent_covariance(12, 3.0, boundary="open")
    eps = f.jitter
    assert eps in (0.0, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3)
    assert torch.allclose(_exact_cov(f.sampler, (12,)), C + eps * torch.eye(12), atol=1e-12)
    g = LatentField(12, 3.0, boundary="open", jitter=1e-3)
    assert g.jitter == 1e-3 and g.site_variance == pytest.approx(1.001)
    assert torch.allclose(g.covariance(), C + 1e-3 * torch.eye(12), atol=1e-12)
    x = g.sample(30000, _gen(4), dtype=torch.float64)
    assert (_emp_cov(x) - g.covariance()).norm() / g.covariance().norm() < 0.03


def test_open_smallest_jitter_is_used():
    # a very smooth open kernel is numerically singular: needs jitter > 0
    f = LatentField(30, 8.0, boundary="open")
    assert f.jitter > 0
    C = latent_covariance(30, 8.0, boundary="open")
    smaller = [e for e in (0.0, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3) if e < f.jitter]
    for e in smaller:
        assert int(torch.linalg.cholesky_ex(C + e * torch.eye(30))[1]) != 0


# ---------------------------------------------------------------- negative control

def test_white_field_control_non_extensive_xi_0p1():
    f = LatentField(16, 0.1)  # reference default ξ without --extensivexis: white noise
    C = f.covariance()
    assert (C - torch.eye(16)).abs().max() < 1e-12
    x = f.sample(20000, _gen(5), dtype=torch.float64)
    off = _emp_cov(x) - torch.diag(torch.diag(_emp_cov(x)))
    assert off.abs().max() < 0.05
    g = LatentField(16, 0.1, extensive=True)  # ξ = 1.6 sites: correlated
    assert g.covariance()[0, 1] > 0.6


# ---------------------------------------------------------------- FFT backends (scipy CPU fast path)

def _clone_like_image(L, dim):
    """A non-separable circulant image (an entrywise function of a kron), like the clone's."""
    f = LatentField(L, 1.7, dim=dim)
    return torch.asin(0.8 * f.sampler.row_image)


@pytest.mark.parametrize("dim,L", [(1, 9), (1, 16), (2, 5), (2, 8)])
def test_fft_backends_realise_the_same_linear_map(dim, L):
    # exact: the two backends applied to the identity basis give the same matrix A (float64),
    # and A Aᵀ is the realised covariance C_eff (odd and even L: the Nyquist column differs)
    s = CirculantGaussian(_clone_like_image(L, dim))
    D, shape = L**dim, (L,) * dim
    eye = torch.eye(D, dtype=torch.float64).reshape((D,) + shape)
    A_scipy = s.transform(eye, backend="scipy").reshape(D, D)
    A_torch = s.transform(eye, backend="torch").reshape(D, D)
    assert torch.allclose(A_scipy, A_torch, rtol=0, atol=1e-13)
    assert torch.allclose(A_scipy.T @ A_scipy, s.covariance(), rtol=0, atol=1e-12)
    assert torch.allclose(A_scipy, A_scipy.T, atol=1e-13)  # the symmetric square root


def test_fft_backends_same_samples_float32_and_seed_stream():
    s = LatentField(20, 3.0, dim=2, jitter=1e-3).sampler
    eps = torch.randn(300, 20, 20, generator=_gen(5))
    ref = s.transform(eps, backend="torch")
    fast = s.transform(eps)  # auto -> scipy on CPU float32
    assert fast.dtype == torch.float32 and fast.shape == eps.shape
    assert torch.allclose(fast, ref, rtol=0, atol=2e-5)
    # the block loop (several scipy blocks, then the copy into the output) gives the same values
    assert torch.equal(s.transform(eps, chunk_size=7), fast)
    # sample() = transform(randn from the same generator): the seed stream is unchanged
    x = s.sample(300, _gen(5))
    assert torch.allclose(x, ref, rtol=0, atol=2e-5)


def test_fft_backend_auto_choice_and_bad_arguments():
    from featlab.data.latent import FFTBackend, resolve_fft_backend

    e32 = torch.zeros(2, 4)
    assert resolve_fft_backend("auto", e32) is FFTBackend.SCIPY
    assert resolve_fft_backend("auto", e32.double()) is FFTBackend.SCIPY
    assert resolve_fft_backend("auto", e32.half()) is FFTBackend.TORCH
    assert resolve_fft_backend("auto", e32.clone().requires_grad_()) is FFTBackend.TORCH
    with pytest.raises(ValueError, match="backend"):
        resolve_fft_backend("numpy", e32)
    with pytest.raises(ValueError, match="backend"):
        resolve_fft_backend("scipy", e32.half())
    s = LatentField(4, 1.0).sampler
    assert s.transform(torch.zeros(0, 4)).shape == (0, 4)
    # a tensor that requires grad still maps (torch path) and keeps its graph
    e = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = s.transform(e)
    assert y.requires_grad and torch.allclose(y, s.transform(e.detach()), atol=1e-13)


# ---------------------------------------------------------------- API

def test_bad_arguments():
    with pytest.raises(ValueError, match="boundary"):
        LatentField(8, 1.0, boundary="wrap")
    with pytest.raises(ValueError, match="dim"):
        LatentField(8, 1.0, dim=3)
    with pytest.raises(ValueError, match="xi"):
        LatentField(8, 0.0)
    with pytest.raises(ValueError, match="method"):
        DenseGaussian(torch.eye(3), (3,), method="svd")


def test_dense_eigh_refuses_or_clips_negative_eigenvalues():
    from featlab.data.latent import IndefiniteCovarianceError

    C = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)  # eigenvalues 3, -1
    with pytest.raises(IndefiniteCovarianceError, match="most negative eigenvalue -1"):
        DenseGaussian(C, (2,), method="eigh")
    with pytest.warns(UserWarning, match="psd='clip'"):
        s = DenseGaussian(C, (2,), method="eigh", psd="clip")
    assert s.spectrum.cov_error == pytest.approx(0.5)
    want = 1.5 * torch.ones(2, 2, dtype=torch.float64)  # 3·vvᵀ, v = (1,1)/√2
    assert torch.allclose(s.covariance(), want)
    assert torch.allclose(_exact_cov(s, (2,)), want)


def test_samples_dtype_and_generator_device():
    f = LatentField(8, 1.5, dim=2)
    x = f.sample(3)
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8) and x.device.type == "cpu"


@pytest.mark.cuda
def test_samples_on_cuda_generator_device():
    g = torch.Generator(device="cuda").manual_seed(0)
    for bd in ("periodic", "open"):
        x = LatentField(8, 1.5, boundary=bd).sample(4, g)
        assert x.device.type == "cuda"


# ---------------------------------------------------------------- quadrature

def test_hermite_moments():
    z, w = hermite_rule(100)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-14)
    assert (w * z**4).sum().item() == pytest.approx(3.0, rel=1e-12)
    assert (w * z**8).sum().item() == pytest.approx(105.0, rel=1e-12)
    with pytest.raises(ValueError, match="n must"):
        hermite_rule(1000)


def test_composite_rule_resolves_steep_erf():
    # E[erf(a z)²] = (2/π) arcsin(2a²/(1+2a²)) (closed form), a = 1e3
    a = 1e3
    want = (2 / math.pi) * math.asin(2 * a * a / (1 + 2 * a * a))
    got = gaussian_expectation(lambda z: torch.erf(a * z) ** 2, scale=1 / a).item()
    assert got == pytest.approx(want, abs=1e-12)
    z, w = composite_rule(1.0)
    assert (w * z**4).sum().item() == pytest.approx(3.0, rel=1e-12)


def test_gaussian_expectation_2d_moments():
    rho = torch.tensor([-0.7, 0.0, 0.3, 0.99])
    assert torch.allclose(gaussian_expectation_2d(lambda u, v: u * v, rho), rho.double(), atol=1e-12)
    want = 1 + 2 * rho.double() ** 2  # E[u²v²]
    assert torch.allclose(gaussian_expectation_2d(lambda u, v: u**2 * v**2, rho), want, atol=1e-12)


def test_fast_psd_scan_agrees_with_the_full_spectrum():
    """The remedy scan's 1D-spectrum shortcut (2D spectrum = outer product) equals latent_spectrum().ok."""
    import itertools

    from featlab.data.latent import _periodic_ok, latent_spectrum

    for L, xi, dim, eps in itertools.product((8, 16, 20, 33), (1.0, 2.5, 3.0, 6.0), (1, 2), (0.0, 1e-3)):
        assert _periodic_ok(L, xi, dim, eps) == latent_spectrum(L, xi, dim, jitter=eps).ok, (L, xi, dim, eps)
