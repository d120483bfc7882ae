"""NORTA Kur(k) data model (spec emergence.md §2.5, §11)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from featlab.data.norta import KurK, kur_quantile, kur_variance, norta_marginal_kurtosis


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _emp_cov(x):
    x = x.reshape(x.shape[0], -1).double()
    return x.T @ x / x.shape[0]


def _moment_by_quad(k, p):
    # E|F⁻¹(U)|^p = ∫_0^1 v^p (1 − v^k)^{−p/k} dv; the (1 − v)^{−p/k} endpoint singularity is
    # handed to QUADPACK's algebraic weight, the rest is smooth
    g = lambda v: v**p * ((1 - v**k) / (1 - v)) ** (-p / k) if v < 1 else k ** (-p / k)
    return integrate.quad(g, 0, 1, weight="alg", wvar=(0, -p / k), limit=200)[0]


def test_moments_closed_form_vs_direct_integration():
    for k in (2.5, 4.5, 7.7, 50.0):
        var = _moment_by_quad(k, 2)
        assert kur_variance(k) == pytest.approx(var, rel=1e-7)
        if k > 4:
            assert norta_marginal_kurtosis(k) == pytest.approx(_moment_by_quad(k, 4) / var**2, rel=1e-7)
    # and the quantile function itself integrates to the same variance (midpoint rule in u)
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    assert (kur_quantile(u, 7.7) ** 2).mean().item() == pytest.approx(kur_variance(7.7), rel=1e-3)
    assert norta_marginal_kurtosis(4.0) == math.inf and norta_marginal_kurtosis(3.0) == math.inf
    assert norta_marginal_kurtosis(1e4) == pytest.approx(1.8, abs=1e-3)  # k → ∞: uniform


def test_kurtosis_decreases_with_k_and_crosses_gaussian():
    ks = [4.1, 4.5, 5.0, 6.1, 7.7, 10.0, 50.0]
    kap = [norta_marginal_kurtosis(k) for k in ks]
    assert all(a > b for a, b in zip(kap, kap[1:]))
    assert kap[2] > 3  # k = 5: heavy-tailed
    assert kap[-1] < 3  # k = 50: sub-Gaussian


def test_marginal_matches_quantile_function_ks():
    m = KurK(16, 2.0, 5.0)
    x = m.sample(20000, _gen(1), dtype=torch.float64)[:, 5].numpy() * m.sigma
    # CDF of F⁻¹(U): F(x) = (v + 1)/2 where v solves v/(1−|v|^k)^{1/k} = x, i.e. v = x/(1+|x|^k)^{1/k}
    cdf = lambda t: 0.5 * (1 + t / (1 + np.abs(t) ** 5.0) ** (1 / 5.0))
    assert stats.kstest(x, cdf).pvalue > 1e-3
    # negative control: the Gaussian CDF at the same scale is rejected
    assert stats.kstest(x / m.sigma, stats.norm.cdf).pvalue < 1e-4


def test_exact_standardisation_unit_variance_and_kurtosis():
    m = KurK(8, 1.0, 7.7)
    x = m.sample(200_000, _gen(2), dtype=torch.float64)
    v = x.var().item()
    assert v == pytest.approx(1.0, abs=0.02)
    k = ((x**4).mean() / (x**2).mean() ** 2).item()
    assert k == pytest.approx(norta_marginal_kurtosis(7.7), rel=0.05)


def test_covariance_quadrature_matches_samples_and_is_distorted():
    m = KurK(10, 2.0, 6.1)
    S = m.covariance()
    assert torch.allclose(torch.diag(S), torch.ones(10, dtype=torch.float64))
    x = m.sample(100_000, _gen(3), dtype=torch.float64)
    assert ((_emp_cov(x) - S).norm() / S.norm()).item() < 0.02
    C = m.latent.covariance()
    assert (S - C).abs().max() > 1e-3  # NORTA changes correlations (reduces them)
    assert (S <= C + 1e-12).all()
    # periodic 1D: one quadrature per distinct distance, so S is circulant
    assert torch.allclose(S, torch.roll(torch.roll(S, 1, 0), 1, 1))


def test_empirical_standardisation_is_batch_dependent():
    m = KurK(8, 1.0, 5.0, standardise="empirical")
    x = m.sample(5000, _gen(4), dtype=torch.float64)
    assert x.std().item() == pytest.approx(1.0, abs=1e-12)
    e = KurK(8, 1.0, 5.0).sample(5000, _gen(4), dtype=torch.float64)
    assert not torch.allclose(x, e)
    assert torch.allclose(x / e, (x / e).flatten()[0].expand_as(x))  # same draw, other scale


def test_bad_arguments():
    with pytest.raises(ValueError, match="k must"):
        KurK(8, 1.0, 2.0)
    with pytest.raises(ValueError, match="standardise"):
        KurK(8, 1.0, 5.0, standardise="robust")
