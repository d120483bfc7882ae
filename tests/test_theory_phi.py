"""The amplifier phi(a) (spec emergence.md §6.2): closed forms, quadrature, Taylor, kurtosis."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from featlab.theory._phi import (
    amplifier, marginal_kurtosis, phi, phi_binary, phi_gaussian, phi_kur, phi_nlgp, phi_taylor,
)

A = torch.linspace(-0.995, 0.995, 41, dtype=torch.float64)


def _c(a):
    return a / (math.sqrt(2) * math.sqrt(1 - a * a))


def test_phi_gaussian_is_linear_with_slope_sqrt_2_over_pi():
    # oracle: E[X erf(cX)] for X ~ N(0,1) by 200-node Gauss-Hermite on the definition
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    for a in [0.05, 0.3, 0.7, 0.95]:
        direct = float(np.sum(w * z * special.erf(_c(a) * z)))
        assert abs(direct - math.sqrt(2 / math.pi) * a) < 1e-10
        assert abs(float(phi_gaussian(torch.tensor(a, dtype=torch.float64))) - direct) < 1e-10


def test_phi_binary_closed_form_matches_definition():
    # X = +-1 with probability 1/2: E[X erf(cX)] = erf(c)
    for a in [0.1, 0.5, 0.9]:
        direct = 0.5 * (special.erf(_c(a)) - special.erf(-_c(a)))
        assert abs(float(phi_binary(torch.tensor(a, dtype=torch.float64))) - direct) < 1e-14


def test_phi_nlgp_large_gain_tends_to_binary_and_small_gain_to_gaussian():
    assert torch.allclose(phi_nlgp(A, 1e5), phi_binary(A), atol=1e-4)
    assert not torch.allclose(phi_nlgp(A, 3.0), phi_binary(A), atol=1e-2)  # control
    assert torch.allclose(phi_nlgp(A, 1e-3), phi_gaussian(A), atol=1e-5)


def test_phi_nlgp_unit_gain_is_uniform_marginal():
    # g_original = 1: x uniform on [-sqrt3, sqrt3]; oracle by adaptive scipy quad
    for a in [0.2, 0.6, 0.97]:
        ref = integrate.quad(lambda x: x * special.erf(_c(a) * x), 0, math.sqrt(3), epsabs=1e-13)[0] / math.sqrt(3)
        assert abs(float(phi_nlgp(torch.tensor(a, dtype=torch.float64), 1.0)) - ref) < 1e-10


def test_convention_gain_followup_is_original_over_sqrt2():
    assert torch.allclose(phi_nlgp(A, 3.0), phi_nlgp(A, 3.0 / math.sqrt(2), "followup"), atol=1e-14)
    assert not torch.allclose(phi_nlgp(A, 3.0), phi_nlgp(A, 3.0, "followup"), atol=1e-4)


def test_phi_kur_monte_carlo():
    k = 5.0
    g = np.random.default_rng(0)
    v = g.uniform(-1, 1, 2_000_000)
    x = v / (1 - np.abs(v) ** k) ** (1 / k) / math.sqrt(special.beta(3 / k, 1 - 2 / k) / k)
    for a in [0.3, 0.8]:
        y = x * special.erf(_c(a) * x)
        mc, se = y.mean(), y.std() / math.sqrt(len(y))
        assert abs(float(phi_kur(torch.tensor(a, dtype=torch.float64), k)) - mc) < 4 * se
    # k -> inf: uniform marginal, same as NLGP at g = 1
    assert torch.allclose(phi_kur(A, 1e5), phi_nlgp(A, 1.0), atol=1e-4)


def test_quadrature_converges_when_panels_double():
    for fn in (lambda a, n: phi_nlgp(a, 30.0, n_panels=n), lambda a, n: phi_kur(a, 4.2, n_panels=n)):
        assert torch.allclose(fn(A, 30), fn(A, 60), atol=1e-12)


@pytest.mark.parametrize("marginal,kw", [("nlgp", {"gain": 2.0}), ("nlgp", {"gain": 0.5}), ("kur", {"k": 8.0})])
def test_taylor_matches_quadrature_to_fifth_order(marginal, kw):
    kappa = marginal_kurtosis(marginal, **kw)
    err = [abs(float(phi(torch.tensor(a, dtype=torch.float64), marginal, **kw) - phi_taylor(torch.tensor(a, dtype=torch.float64), kappa))) for a in (0.02, 0.04)]
    assert 2 ** 5 * 0.8 < err[1] / err[0] < 2 ** 5 * 1.25  # O(a^5): doubling a multiplies by 32
    # the reference prefactor (quirk) is off at third order, not fifth
    ref = abs(float(phi(torch.tensor(0.02, dtype=torch.float64), marginal, **kw) - phi_taylor(torch.tensor(0.02, dtype=torch.float64), kappa, "reference")))
    assert ref > 100 * err[0]


def test_slope_at_zero_is_universal():
    h = 1e-6
    for f in (lambda a: phi_nlgp(a, 4.0), lambda a: phi_kur(a, 6.0), phi_binary, phi_gaussian):
        slope = float(f(torch.tensor(h, dtype=torch.float64))) / h
        assert abs(slope - math.sqrt(2 / math.pi)) < 1e-6


def test_marginal_kurtosis_nlgp_and_kur():
    z = np.random.default_rng(1).standard_normal(2_000_000)
    x = special.erf(2.0 * z / math.sqrt(2))
    mc = (x ** 4).mean() / (x ** 2).mean() ** 2
    assert abs(marginal_kurtosis("nlgp", gain=2.0) - mc) < 5e-3
    gains = [0.1, 0.5, 1, 2, 5, 50]
    ks = [marginal_kurtosis("nlgp", gain=g) for g in gains]
    assert all(b < a for a, b in zip(ks, ks[1:])) and ks[0] < 3 and ks[-1] > 1
    assert abs(marginal_kurtosis("nlgp", gain=1.0) - 1.8) < 1e-12  # uniform
    assert marginal_kurtosis("kur", k=4.0) == math.inf and marginal_kurtosis("kur", k=5.0) > 3
    assert abs(marginal_kurtosis("kur", k=1e6) - 1.8) < 1e-4


def test_amplifier_table_matches_quadrature():
    f = amplifier("nlgp", gain=3.0)
    a = torch.rand(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    assert torch.allclose(f(a), phi_nlgp(a, 3.0), atol=2e-6)
    assert torch.allclose(f(torch.tensor([1.0, -1.0], dtype=torch.float64)), phi_nlgp(torch.tensor([1.0, -1.0]), 3.0), atol=1e-9)


def test_exception():
    with pytest.raises(ValueError, match="marginal"):
        marginal_kurtosis("cauchy")
    with pytest.raises(ValueError, match="k must be"):
        phi_kur(A, 2.0)
    with pytest.raises(ValueError, match="gain"):
        phi(A, "nlgp")
    with pytest.raises(ValueError, match="gain_convention"):
        phi_nlgp(A, 1.0, "new")
    with pytest.raises(ValueError, match="taylor_prefactor"):
        phi_taylor(A, 2.0, "approx")
