"""Elliptical and Student-t data models (spec emergence.md §2.6, §11)."""
from __future__ import annotations

import math

import pytest
import torch

from featlab.data.elliptical import Elliptical, StudentT, weird_radius


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _emp_cov(x):
    x = x.reshape(x.shape[0], -1).double()
    return x.T @ x / x.shape[0]


def test_weird_radius_is_two_plus_artanh():
    u = torch.linspace(0.001, 0.999, 50, dtype=torch.float64)
    assert torch.allclose(weird_radius(u), 2 + torch.atanh(u), atol=1e-12)
    # E[r²] = 4 + 4 ln 2 + π²/12 (∫artanh = ln 2, ∫artanh² = π²/12)
    assert Elliptical(8, 1.0).r2 == pytest.approx(4 + 4 * math.log(2) + math.pi**2 / 12, rel=1e-8)


@pytest.mark.parametrize("radius", ["weird", "shell"])
@pytest.mark.parametrize("dim", [1, 2])
def test_elliptical_covariance_is_C(radius, dim):
    L, xi = (10, 2.0) if dim == 1 else (5, 1.5)   # PSD periodic kernels
    m = Elliptical(L, xi, radius=radius, dim=dim)
    x = m.sample(100_000, _gen(1), dtype=torch.float64)
    assert x.shape == (100_000,) + (L,) * dim
    C = m.covariance()
    assert ((_emp_cov(x) - C).norm() / C.norm()).item() < 0.02


def test_shell_radius_norm_and_kurtosis():
    m = Elliptical(12, 2.0, radius="shell")
    x = m.sample(20000, _gen(2), dtype=torch.float64)
    # x = c·A u with ‖u‖ = 1 and A = F⁻¹ diag(√λ) F: ‖A⁻¹x‖ is the constant c = √D
    lam = m.latent.sampler.lam
    xhat = torch.fft.fft(x, dim=1) / lam.sqrt()
    norms = (torch.fft.ifft(xhat, dim=1).real.pow(2).sum(1)).sqrt()
    assert torch.allclose(norms, torch.full_like(norms, math.sqrt(12)), rtol=1e-8)
    k = ((x**4).mean() / (x**2).mean() ** 2).item()
    assert k == pytest.approx(m.marginal_kurtosis, rel=0.03)
    assert m.marginal_kurtosis == pytest.approx(3 * 12 / 14)


def test_student_t_covariance_and_kurtosis():
    m = StudentT(10, 2.0, df=3)
    x = m.sample(100_000, _gen(3), dtype=torch.float64)
    C = m.covariance()
    # df = 3: infinite 4th moment, so the sample covariance converges slowly; loose bound
    assert ((_emp_cov(x) - C).norm() / C.norm()).item() < 0.1
    assert m.marginal_kurtosis == math.inf
    m6 = StudentT(10, 2.0, df=6.5)  # non-integer df: inverse-CDF χ²
    y = m6.sample(100_000, _gen(4), dtype=torch.float64)
    assert ((_emp_cov(y) - C).norm() / C.norm()).item() < 0.03
    assert m6.marginal_kurtosis == pytest.approx(3 + 6 / 2.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="radius"):
        Elliptical(8, 1.0, radius="ball")
    with pytest.raises(ValueError, match="df"):
        StudentT(8, 1.0, df=2)
