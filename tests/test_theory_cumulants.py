"""Fourth cumulant (spec emergence.md §6.1): Gaussian zero, iid diag, TI = translation average,
NLGP quadrature = samples, contraction = tensor, chunking invariance."""
from __future__ import annotations

import math

import pytest
import torch

from featlab.theory._phi import marginal_kurtosis
from featlab.theory.cumulants import (
    cumulant4, kappa4_contract, nlgp_covariance, nlgp_cumulant4, nlgp_latent_moment4, ti_to_dense,
)


def _kernel(D, xi):
    i = torch.arange(D)
    d = (i[:, None] - i[None]).abs()
    d = torch.minimum(d, D - d).double()
    return torch.exp(-d ** 2 / xi ** 2)


def _sqrt(C):
    lam, V = torch.linalg.eigh(C)
    return V @ torch.diag(lam.clamp_min(0).sqrt()) @ V.T


def _nlgp(n, C, gain, seed):
    """NLGP samples with the exact per-site normaliser of the realised latent C_eff = sqrt(C)^2."""
    A = _sqrt(C)
    z = torch.randn(n, C.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64) @ A
    s2 = torch.diagonal(A @ A)
    gam = (2 / math.pi) * torch.asin(gain ** 2 * s2 / (1 + gain ** 2 * s2))
    return torch.special.erf(gain * z / math.sqrt(2)) / torch.sqrt(gam)


def _entry_se(X):
    """Standard error of each dense moment entry, sd(x_i x_j x_k x_l) / sqrt(n), via pair products
    (E[(x_i x_j x_k x_l)^2] = E[(x_i x_j)^2 (x_k x_l)^2]) so no (n, D^4) array is formed."""
    n, D = X.shape
    P = (X[:, :, None] * X[:, None, :]).reshape(n, D * D)
    m4 = (P.T @ P / n).reshape(D, D, D, D)
    m8 = ((P * P).T @ (P * P) / n).reshape(D, D, D, D)
    return torch.sqrt((m8 - m4 ** 2).clamp_min(0) / n)


def test_gaussian_samples_have_zero_cumulant_within_sampling_error():
    D, n = 5, 20_000
    C = _kernel(D, 2.0)
    X = torch.randn(n, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64) @ _sqrt(C)
    K, se = cumulant4(X, Sigma=C), _entry_se(X)
    assert (K.abs() / se).max() < 5.0
    U = (torch.rand(n, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1) * math.sqrt(3)
    assert (cumulant4(U, Sigma=torch.eye(D, dtype=torch.float64)).abs() / _entry_se(U)).max() > 20  # control


def test_iid_non_gaussian_is_excess_kurtosis_times_diag():
    D, n = 4, 200_000
    U = (torch.rand(n, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1) * math.sqrt(3)
    K = cumulant4(U, Sigma=torch.eye(D, dtype=torch.float64))
    expected = torch.zeros(D, D, D, D, dtype=torch.float64)
    for i in range(D):
        expected[i, i, i, i] = 1.8 - 3
    assert (K - expected).abs().max() < 5 * float(_entry_se(U).max())


def test_translation_invariant_form_is_translation_average_of_dense():
    D = 6
    X = _nlgp(3000, _kernel(D, 2.0), 2.0, 3)
    S = nlgp_covariance(_kernel(D, 2.0), 2.0)
    Kd, Kt = cumulant4(X, Sigma=S), cumulant4(X, "translation_invariant", Sigma=S)
    r = torch.arange(D)
    a, b, c = r[:, None, None], r[None, :, None], r[None, None, :]
    avg = sum(Kd[i, (i + a) % D, (i + b) % D, (i + c) % D] for i in range(D)) / D
    assert torch.allclose(Kt, avg, atol=1e-12)
    # and without an exact Sigma: both use sample second moments (TI: translation-averaged)
    Kt2 = cumulant4(X, "translation_invariant")
    assert (Kt2 - Kt).abs().max() < 0.1 and not torch.equal(Kt2, Kt)


def test_convention_ti_index_is_offset_from_first_site():
    # K(a, b, c) = kappa4(0, a, b, c): a planted local term at sites (i, i+1, i+1, i+1) only
    D = 7
    K = torch.zeros(D, D, D, dtype=torch.float64)
    K[1, 1, 1] = 1.0
    T = ti_to_dense(K)
    assert T[3, 4, 4, 4] == 1.0 and T[4, 3, 3, 3] == 0.0 and T[6, 0, 0, 0] == 1.0  # wraps mod D


def test_chunk_size_does_not_change_the_result():
    X = _nlgp(1000, _kernel(8, 2.0), 3.0, 4)
    for form in ("dense", "translation_invariant"):
        assert torch.allclose(cumulant4(X, form, chunk_size=1000), cumulant4(X, form, chunk_size=37), atol=1e-12)


def test_kappa4_contract_equals_tensor_contraction():
    D = 6
    C = _kernel(D, 2.0)
    S = nlgp_covariance(C, 2.0)
    X = _nlgp(5000, C, 2.0, 5)
    K = cumulant4(X, Sigma=S)
    W = torch.randn(3, D, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert torch.allclose(kappa4_contract(X, W, S, chunk_size=777), torch.einsum("ijkl,sj,sk,sl->si", K, W, W, W), atol=1e-10)
    assert kappa4_contract(X, W[0], S).shape == (D,)


def test_nlgp_quadrature_matches_samples():
    D, gain = 6, 1.5
    C = _sqrt(_kernel(D, 2.0)) @ _sqrt(_kernel(D, 2.0))  # the realised (clipped) latent covariance
    X = _nlgp(100_000, C, gain, 7)
    S = nlgp_covariance(C, gain)
    assert (X.T @ X / len(X) - S).abs().max() < 0.01  # arcsine covariance
    Kq = nlgp_cumulant4(C, gain, form="dense", n_nodes=16)
    Ks = cumulant4(X, Sigma=S, chunk_size=50_000)
    se = _entry_se(X)
    assert ((Kq - Ks).abs() / se).max() < 5.0
    assert Kq[0, 0, 0, 0] < -0.5  # sub-Gaussian, local
    assert abs(float(Kq[0, 0, 0, 0]) - (marginal_kurtosis("nlgp", gain=gain * float(C[0, 0]) ** 0.5) - 3)) < 1e-10
    # the TI quadrature is the dense one re-indexed
    assert torch.allclose(ti_to_dense(nlgp_cumulant4(C, gain, n_nodes=16)), Kq, atol=1e-12)


def test_nlgp_quadrature_converges_when_nodes_grow():
    C = _kernel(8, 2.0)
    idx = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1], [0, 0, 0, 2]])
    a = nlgp_latent_moment4(C, idx, 1.5, n_nodes=16)
    b = nlgp_latent_moment4(C, idx, 1.5, n_nodes=24)
    assert (a - b).abs().max() < 3e-3


def test_exception():
    X = torch.zeros(10, 40, dtype=torch.float64)
    with pytest.raises(ValueError, match="D <= 32"):
        cumulant4(X)
    with pytest.raises(ValueError, match="form"):
        cumulant4(X[:, :4], "sparse")
    with pytest.raises(ValueError, match="X must be"):
        cumulant4(torch.zeros(3))
    with pytest.raises(ValueError, match="gain_convention"):
        nlgp_covariance(_kernel(4, 1.0), 1.0, "new")


def test_quadrature_matches_the_featlab_nlgp_data_model():
    from featlab.data import NLGP

    m = NLGP(L=8, xi=1.5, gain=1.5)
    C = m.latent.covariance()
    assert torch.allclose(nlgp_covariance(C, 1.5), m.covariance(), atol=1e-12)
    X = m.sample(100_000, torch.Generator().manual_seed(8), dtype=torch.float64)
    K = cumulant4(X, "translation_invariant", Sigma=m.covariance())
    Kq = nlgp_cumulant4(C, 1.5, n_nodes=20)
    # the TI estimate averages over 8 strongly correlated translations: bound by the dense standard error
    se = _entry_se(X.reshape(len(X), -1))[0]
    assert ((K - Kq).abs() / se).max() < 5.0


def test_nlgp_moments_at_large_gain_match_monte_carlo():
    """g = 3 (steep erf): entries with 1-4 distinct sites within 4 standard errors of 3e5 samples.

    The former tensor Gauss-Hermite rule failed this (E[x_0^3 x_2] = 0.226 at 16 nodes vs 0.180,
    ~17 standard errors here)."""
    from featlab.data import NLGP

    m = NLGP(L=8, xi=1.5, gain=3.0)
    C = m.latent.covariance()
    idx = torch.tensor([[0, 0, 0, 2], [0, 0, 2, 2], [0, 1, 2, 3], [0, 0, 1, 3], [0, 0, 0, 0], [0, 1, 1, 1],
                        [0, 2, 4, 6], [0, 1, 4, 5]])
    q = nlgp_latent_moment4(C, idx, 3.0, n_nodes=16)
    X = m.sample(300_000, torch.Generator().manual_seed(11), dtype=torch.float64).reshape(300_000, -1)
    p = X[:, idx].prod(-1)  # (n, E)
    se = p.std(0) / math.sqrt(len(p))
    assert ((q - p.mean(0)).abs() / se).max() < 4.0
    # E[x^4] against the independent 1-D rule of _phi (kurtosis of the marginal)
    assert abs(float(q[4]) - marginal_kurtosis("nlgp", gain=3.0 * float(C[0, 0]) ** 0.5)) < 1e-9


def test_nlgp_moments_converge_at_gain_10_and_chunking_is_memory_only():
    from featlab.data import NLGP

    C = NLGP(L=8, xi=1.5, gain=10.0).latent.covariance()
    r = torch.arange(8)
    idx = torch.stack(torch.meshgrid(r[:3], r, r[:4], r[2:6], indexing="ij"), -1).reshape(-1, 4)
    a = nlgp_latent_moment4(C, idx, 10.0, n_nodes=16)
    b = nlgp_latent_moment4(C, idx, 10.0, n_nodes=64, chunk_size=37)
    assert ((a - b).abs() / b.abs()).max() < 1e-5
    assert torch.allclose(nlgp_latent_moment4(C, idx, 10.0, n_nodes=16, chunk_size=5), a, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="n_nodes"):
        nlgp_latent_moment4(C, idx, 10.0, n_nodes=1)
