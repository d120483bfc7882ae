"""Ising data model (spec emergence.md §2.4, §11)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featlab.data.ising import (T_CRITICAL, Ising, integrated_autocorrelation_time, ising_correlation_length,
                                ising_energy, ising_enumerate, ising_ring_correlation)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Many small tensor ops: thread start-up dominates on a loaded 2-core machine."""


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _emp_cov(x):
    x = x.reshape(x.shape[0], -1).double()
    return x.T @ x / x.shape[0]


def _enum_cov(L, dim=1, **kw):
    st, p = ising_enumerate(L, dim, **kw)
    X = st.reshape(st.shape[0], -1)
    return (X * p[:, None]).T @ X


def test_correlation_length_reference_values():
    assert ising_correlation_length([1.0, 2.0, 3.0]) == pytest.approx([3.6719, 1.2954, 0.8813], abs=1e-4)
    assert Ising.from_temperature(2.0, 8).xi == pytest.approx(1.2954, abs=1e-4)


@pytest.mark.parametrize("N,T", [(6, 1.0), (11, 2.0), (12, 0.7)])
def test_ring_formula_matches_enumeration(N, T):
    C = _enum_cov(N, beta=1 / T)
    t = math.tanh(1 / T)
    assert torch.allclose(C[0], torch.as_tensor(ising_ring_correlation(N, t, np.arange(N))), atol=1e-12)
    assert torch.allclose(Ising.from_temperature(T, N).covariance(), C, atol=1e-12)


def test_open_chain_covariance_matches_enumeration_t_pow_d():
    C = _enum_cov(9, beta=0.8, boundary="open")
    t = math.tanh(0.8)
    d = torch.arange(9, dtype=torch.float64)
    assert torch.allclose(C[2], t ** (d - 2).abs(), atol=1e-12)
    assert torch.allclose(Ising(9, beta=0.8, boundary="open").covariance(), C, atol=1e-12)


@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_exact_1d_sampler_matches_exact_covariance(boundary):
    m = Ising.from_temperature(1.0, 10, boundary=boundary)
    x = m.sample(100_000, _gen(1), dtype=torch.float64)
    assert set(x.unique().tolist()) == {-1.0, 1.0}
    err = (_emp_cov(x) - m.covariance()).abs().max().item()
    assert err < 4 / math.sqrt(100_000) * 2  # per-entry SE ≤ 1/√n; ~8 SE max over 100 entries
    assert x.mean().abs() < 0.02


def test_exact_ring_sampler_full_distribution_vs_enumeration():
    # N = 5: compare the frequencies of all 32 states with the Boltzmann probabilities
    st, p = ising_enumerate(5, beta=0.6)
    x = Ising(5, beta=0.6).sample(200_000, _gen(2), dtype=torch.float64)
    code = ((x > 0).long() * (2 ** torch.arange(5))).sum(1)
    freq = torch.bincount(code, minlength=32).double() / x.shape[0]
    se = (p * (1 - p) / x.shape[0]).sqrt()
    assert ((freq - p).abs() <= 5 * se + 1e-4).all()


def test_convention_parameterisations():
    a = Ising.from_temperature(2.0, 8)
    b = Ising.from_coupling(0.5, 8)
    assert a.J == 1.0 and a.beta == 0.5 and b.J == 0.5 and b.beta == 1.0
    assert torch.allclose(a.covariance(), b.covariance())  # only βJ matters
    assert a.t == pytest.approx(math.tanh(0.5))


def test_energy_definition_one_bond_per_site_and_axis():
    s = torch.ones(1, 3, 3, dtype=torch.float64)
    assert ising_energy(s).item() == -18.0  # 9 sites × 2 axes
    assert ising_energy(s, boundary="open").item() == -12.0
    s1 = torch.tensor([[1.0, -1.0, 1.0, 1.0]])
    assert ising_energy(s1).item() == 0.0  # bonds: -1, -1, +1, +1


@pytest.mark.parametrize("T", [1.8, T_CRITICAL, 3.5])
def test_2d_4x4_energy_and_abs_m_vs_enumeration(T):
    st, p = ising_enumerate(4, 2, beta=1 / T)
    E_ex = (ising_energy(st) / 16 * p).sum().item()
    M_ex = (st.flatten(1).mean(1).abs() * p).sum().item()
    x = Ising.from_temperature(T, 4, 2, burn_in_sweeps=40).sample(1500, _gen(3), dtype=torch.float64)
    E = ising_energy(x) / 16
    M = x.flatten(1).mean(1).abs()
    assert E.mean().item() == pytest.approx(E_ex, abs=4 * E.std().item() / math.sqrt(1500) + 1e-3)
    assert M.mean().item() == pytest.approx(M_ex, abs=4 * M.std().item() / math.sqrt(1500) + 1e-3)


def test_2d_samplers_agree_on_larger_lattice():
    T, L, n = 3.0, 6, 400
    res = {}
    for smp, burn in (("swendsen_wang", 30), ("wolff", 80), ("metropolis", 100)):
        m = Ising.from_temperature(T, L, 2, sampler=smp, burn_in_sweeps=burn)
        x = m.sample(n, _gen(4), dtype=torch.float64)
        E = ising_energy(x) / L**2
        res[smp] = (E.mean().item(), E.std().item() / math.sqrt(n))
    ref, se_ref = res["swendsen_wang"]
    for smp in ("wolff", "metropolis"):
        mu, se = res[smp]
        assert abs(mu - ref) < 4 * math.hypot(se, se_ref)


def test_2d_covariance_exact_small_and_empirical_large_is_circulant():
    m = Ising.from_temperature(2.5, 4, 2)
    C = m.covariance()
    assert torch.allclose(C, _enum_cov(4, 2, beta=0.4), atol=1e-12)
    assert torch.allclose(torch.diag(C), torch.ones(16, dtype=torch.float64))
    big = Ising.from_temperature(4.0, 6, 2, covariance_samples=2000, burn_in_sweeps=10)
    Cb = big.covariance()
    from featlab.data.clone import GaussianClone
    from featlab.data.latent import CirculantGaussian
    assert isinstance(GaussianClone.of(big).sampler, CirculantGaussian)
    assert torch.allclose(torch.diag(Cb), torch.ones(36, dtype=torch.float64))
    assert Cb[0, 1].item() > 0.1  # nearest neighbours correlated at T = 4


def test_reference_samplers_run_and_original_is_autocorrelated():
    m = Ising.from_temperature(1.0, 12, sampler="original_metropolis")
    x = m.sample(300, _gen(5), dtype=torch.float64)
    assert x.shape == (300, 12) and set(x.unique().tolist()) <= {-1.0, 1.0}
    # successive samples are 10 single-spin moves apart: they mostly coincide
    same = (x[1:] == x[:-1]).double().mean().item()
    assert same > 0.5
    f = Ising.from_temperature(2.0, 8, sampler="followup_metropolis").sample(200, _gen(6), dtype=torch.float64)
    assert f.shape == (200, 8)
    # 1000 moves on 8 sites is well equilibrated at T = 2: nearest-neighbour correlation ≈ ring value
    want = ising_ring_correlation(8, math.tanh(0.5), 1)
    assert (f * torch.roll(f, 1, 1)).mean().item() == pytest.approx(want, abs=0.1)


def test_chains_fewer_than_samples_and_autocorrelation_time():
    m = Ising.from_temperature(3.0, 6, 2, n_chains=10, sweeps_between_samples=2, burn_in_sweeps=5)
    assert m.sample(35, _gen(7)).shape == (35, 6, 6)
    tau = m.autocorrelation_times(n_chains=8, n_sweeps=60, generator=_gen(8))
    assert 1.0 <= tau["tau_abs_m"] < 10 and 1.0 <= tau["tau_energy"] < 10
    # AR(1) with coefficient φ: τ = (1 + φ)/(1 - φ)
    g = _gen(9)
    phi, n = 0.8, 20000
    e = torch.randn(n, 8, generator=g, dtype=torch.float64)
    x = torch.zeros_like(e)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    assert integrated_autocorrelation_time(x) == pytest.approx(9.0, rel=0.15)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sampler"):
        Ising(8, sampler="heatbath")
    with pytest.raises(ValueError, match="exact"):
        Ising(4, dim=2, sampler="exact")
    with pytest.raises(ValueError, match="even L"):
        Ising(5, dim=2, sampler="metropolis")
    with pytest.raises(ValueError, match="T must"):
        Ising.from_temperature(0.0, 8)


def test_marginal_kurtosis_binary():
    assert Ising(8).marginal_kurtosis == 1.0


@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_cluster_labelling_methods_give_the_same_partition(boundary):
    m = Ising.from_temperature(T_CRITICAL, 7, 2, boundary=boundary)
    s = m._random_spins(20, _gen(10), "cpu")
    a = m._cluster_labels(s, _gen(11), method="csgraph").reshape(-1)
    b = m._cluster_labels(s, _gen(11), method="propagation").reshape(-1)
    pairs = torch.unique(torch.stack([a, b]), dim=1).shape[1]
    assert pairs == a.unique().numel() == b.unique().numel()  # a bijection between the labels
    assert 20 < a.unique().numel() < 20 * 49  # non-trivial clusters
    # clusters never cross chains and are spin-aligned (ferromagnetic FK bonds)
    lab = a.reshape(20, 49)
    for k in range(20):
        for other in range(k + 1, min(k + 3, 20)):
            assert not set(lab[k].tolist()) & set(lab[other].tolist())
    sf = s.reshape(20, 49)
    for u in lab.unique()[:50]:
        assert sf[lab == u].unique().numel() == 1


def test_translation_averaged_covariance_equals_explicit_average():
    from featlab.data.ising import translation_averaged_covariance

    X = torch.randn(7, 4, 4, generator=_gen(12), dtype=torch.float64)
    C = translation_averaged_covariance(X)
    L, D = 4, 16
    want = torch.zeros(D, D, dtype=torch.float64)
    for r in range(L):
        for c in range(L):  # translate every sample by (r, c) and accumulate x xᵀ
            Y = torch.roll(X, (r, c), (1, 2)).reshape(7, D)
            want += Y.T @ Y / 7
    assert torch.allclose(C, want / D, atol=1e-12)


@pytest.mark.parametrize("sampler", ["swendsen_wang", "wolff", "metropolis"])
def test_1d_chain_samplers_match_ring_formula(sampler):
    T, N, n = 1.5, 10, 2000
    m = Ising.from_temperature(T, N, sampler=sampler, burn_in_sweeps=60 if sampler != "wolff" else 150)
    x = m.sample(n, _gen(13), dtype=torch.float64)
    t = math.tanh(1 / T)
    for d in (1, 3):
        want = ising_ring_correlation(N, t, d)
        got = (x * torch.roll(x, d, 1)).mean().item()  # averaged over the N sites
        assert got == pytest.approx(want, abs=0.05)
