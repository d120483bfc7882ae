"""NLGP and Gaussian clone (spec emergence.md §2.2, §2.3, §11)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from featlab.data.clone import GaussianClone
from featlab.data.latent import CirculantGaussian, DenseGaussian
from featlab.data.nlgp import NLGP, nlgp_covariance, nlgp_marginal_kurtosis, nlgp_normaliser


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _emp_cov(x):
    x = x.reshape(x.shape[0], -1).double()
    return x.T @ x / x.shape[0]


def _rel(A, B):
    return ((A - B).norm() / B.norm()).item()


def _kurt(x):
    x = x.double().reshape(-1)
    return ((x**4).mean() / (x**2).mean() ** 2).item()


# ---------------------------------------------------------------- NLGP vs clone covariance

@pytest.mark.parametrize("conv,boundary,jitter,dim,psd", [
    ("original", "periodic", None, 1, "refuse"),
    ("followup", "periodic", 1e-3, 1, "refuse"),
    ("original", "open", 1e-3, 1, "refuse"),
    ("followup", "open", None, 1, "refuse"),
    ("original", "periodic", None, 2, "refuse"),
    ("original", "periodic", None, 1, "clip"),   # L = 8, ξ = 3: indefinite, clipped on request
])
def test_nlgp_empirical_covariance_equals_clone(conv, boundary, jitter, dim, psd):
    # expected relative Frobenius sampling error ≈ sqrt(D / (n·Σ_j Σ̃_0j²)) ≈ 0.005 here
    L, xi = ((10, 2.0) if dim == 1 else (5, 1.5)) if psd == "refuse" else (8, 3.0)
    kw = dict(dim=dim, gain_convention=conv, boundary=boundary, jitter=jitter, psd=psd)
    if psd == "clip":
        with pytest.warns(UserWarning, match="psd='clip'"):
            m, c = NLGP(L, xi, 3.0, **kw), GaussianClone(L, xi, 3.0, **kw)
        assert m.latent.cov_error > 1e-3 and c.cov_error == m.latent.cov_error
    else:
        m, c = NLGP(L, xi, 3.0, **kw), GaussianClone(L, xi, 3.0, **kw)
    assert c.jitter == m.jitter
    S = c.covariance()
    assert torch.allclose(m.covariance(), S, atol=1e-10)
    x = m.sample(100_000, _gen(1), dtype=torch.float64)
    assert _rel(_emp_cov(x), S) < 1e-2
    # the clone's own samples realise Σ̃ too
    y = c.sample(100_000, _gen(2), dtype=torch.float64)
    assert _rel(_emp_cov(y), S) < 1e-2


def test_negative_control_class0_nlgp_vs_class1_clone_mismatch():
    m0 = NLGP(20, 1.0, 3.0)
    c1 = GaussianClone(20, 2.5, 3.0)
    x = m0.sample(100_000, _gen(3), dtype=torch.float64)
    assert _rel(_emp_cov(x), c1.covariance()) > 0.3


def test_reference_formula_fails_on_diagonal_with_large_eps():
    # reference NLGP (γ at unit diagonal) with ε = 0.1: the reference clone's diagonal is wrong,
    # the exact formula (same normaliser) matches.
    kw = dict(boundary="open", jitter=0.1)
    m = NLGP(10, 2.0, 3.0, variance="reference", **kw)
    x = m.sample(100_000, _gen(4), dtype=torch.float64)
    E = _emp_cov(x)
    exact = GaussianClone(10, 2.0, 3.0, variance="reference", **kw).covariance()
    ref = GaussianClone(10, 2.0, 3.0, clone_formula="reference", **kw).covariance()
    assert _rel(E, exact) < 1e-2
    assert (torch.diag(E) - torch.diag(ref)).abs().mean() > 0.1


# ---------------------------------------------------------------- clone at large gain

@pytest.mark.parametrize("gain", [100.0, 1e4])
@pytest.mark.parametrize("boundary,jitter", [("periodic", None), ("open", 1e-3)])
def test_clone_finite_and_psd_at_large_gain(gain, boundary, jitter):
    c = GaussianClone(10, 2.0, gain, boundary=boundary, jitter=jitter)
    S = nlgp_covariance(c_latent_cov(10, 2.0, boundary, jitter), gain)
    assert torch.isfinite(S).all()
    assert torch.linalg.eigvalsh(S).min() > -1e-10
    assert torch.isfinite(c.sample(100, _gen(5))).all()
    assert torch.diag(c.covariance()).sub(1).abs().max() < 1e-9


def c_latent_cov(L, xi, boundary, jitter):
    return NLGP(L, xi, 1.0, boundary=boundary, jitter=jitter).latent.covariance()


def test_reference_formula_raises_above_inverse_sqrt_eps():
    kw = dict(boundary="open", jitter=1e-3)  # 1/√ε ≈ 31.6
    GaussianClone(10, 2.0, 30.0, clone_formula="reference", **kw)  # below: fine
    with pytest.raises(ValueError, match=r"g=40.*eps=0\.001"):
        GaussianClone(10, 2.0, 40.0, clone_formula="reference", **kw)
    c = GaussianClone(10, 2.0, 40.0, **kw)  # exact formula: finite
    assert torch.isfinite(c.covariance()).all()


# ---------------------------------------------------------------- marginals

@pytest.mark.parametrize("conv", ["original", "followup"])
def test_unit_variance_exact(conv):
    for kw in (dict(), dict(boundary="open", jitter=0.05)):
        x = NLGP(8, 1.0, 2.0, gain_convention=conv, **kw).sample(50_000, _gen(6), dtype=torch.float64)
        v = x.var().item()
        assert v == pytest.approx(1.0, abs=0.01)
    # reference normaliser with a big jitter: variance = E[erf²(a z)], z ~ N(0, 1.05), over γ(g)
    m = NLGP(8, 1.0, 2.0, gain_convention=conv, boundary="open", jitter=0.05, variance="reference")
    want = (nlgp_normaliser(2.0, conv, 1.05) / nlgp_normaliser(2.0, conv, 1.0)) ** 2
    assert want > 1.005
    assert m.covariance()[0, 0].item() == pytest.approx(want, rel=1e-12)


def test_convention_gain_original_vs_followup_same_latent_draw():
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    g = 3.0
    mo = NLGP(13, 2.0, g, gain_convention="original")
    mf = NLGP(13, 2.0, g / math.sqrt(2), gain_convention="followup")
    gamma = (2 / math.pi) * math.asin(g * g / (1 + g * g))
    assert torch.allclose(mo.transform(z), torch.erf(g * z / math.sqrt(2)) / math.sqrt(gamma), atol=1e-15)
    assert torch.allclose(mf.transform(z), mo.transform(z), atol=1e-14)
    assert torch.allclose(mo.sample(64, _gen(7), dtype=torch.float64),
                          mf.sample(64, _gen(7), dtype=torch.float64), atol=1e-14)
    # the same numeric gain in the other convention is a different model (√2 steeper)
    assert not torch.allclose(NLGP(13, 2.0, g, gain_convention="followup").transform(z), mo.transform(z))


def test_sample_is_transform_of_the_latent_draw_same_seed():
    # sample() applies erf in place on the fresh latent draw: same values as transform(z)
    m = NLGP(12, 2.0, 3.0, dim=2)
    for dt in (torch.float32, torch.float64):
        want = m.transform(m.latent.sample(40, _gen(7), dtype=dt))
        got = m.sample(40, _gen(7), dtype=dt)
        assert got.dtype == dt and torch.equal(got, want)


def test_limit_g1_uniform_marginal():
    x = NLGP(16, 1.0, 1.0).sample(20000, _gen(8), dtype=torch.float64)[:, 3].numpy()
    r3 = math.sqrt(3)
    assert stats.kstest(x, stats.uniform(loc=-r3, scale=2 * r3).cdf).pvalue > 1e-3
    assert np.abs(x).max() <= r3 + 1e-12


def test_limit_large_gain_binary():
    m = NLGP(16, 2.0, 1e4)
    x = m.sample(2000, _gen(9), dtype=torch.float64)
    gamma = (2 / math.pi) * math.asin(1e8 / (1 + 1e8))
    frac = ((x.abs() * math.sqrt(gamma)) > 1 - 1e-6).double().mean().item()
    assert frac >= 0.99


def test_limit_small_gain_gaussian_kurtosis():
    assert abs(nlgp_marginal_kurtosis(0.01) - 3) < 1e-3
    x = NLGP(8, 1.0, 0.01).sample(100_000, _gen(10), dtype=torch.float64)
    assert _kurt(x[:, 0]) == pytest.approx(3.0, abs=0.1)


# ---------------------------------------------------------------- kurtosis quadrature

@pytest.mark.parametrize("g", [0.5, 3.0, 30.0])
def test_kurtosis_quadrature_matches_monte_carlo(g):
    z = torch.randn(400_000, generator=_gen(11), dtype=torch.float64)
    x = torch.erf(g * z / math.sqrt(2))
    k = _kurt(x)
    # standard error of the kurtosis ratio, from the delta method ≈ sd(x⁴/m2² - 2κ x²/m2)/√n
    m2 = (x**2).mean()
    se = ((x**4 / m2**2 - 2 * k * x**2 / m2).std() / math.sqrt(x.numel())).item()
    assert nlgp_marginal_kurtosis(g) == pytest.approx(k, abs=4 * se)


def test_kurtosis_quadrature_converges_monotone_and_bounded():
    gs = np.logspace(-2, 4, 13)
    kap = [nlgp_marginal_kurtosis(g) for g in gs]
    assert all(a > b for a, b in zip(kap, kap[1:]))
    assert all(1 < k < 3 for k in kap)
    for g in (0.3, 3.0, 10.0, 300.0):
        assert abs(nlgp_marginal_kurtosis(g, n=100) - nlgp_marginal_kurtosis(g, n=200)) < 1e-10
    assert nlgp_marginal_kurtosis(1.0) == pytest.approx(1.8, abs=1e-12)  # uniform: 9/5
    assert nlgp_marginal_kurtosis(3.0, "followup") == pytest.approx(nlgp_marginal_kurtosis(3 * math.sqrt(2)))
    assert NLGP(8, 1.0, 3.0).marginal_kurtosis == pytest.approx(nlgp_marginal_kurtosis(3.0), abs=1e-9)


def test_symmetry_zero_mean():
    x = NLGP(8, 1.0, 3.0).sample(100_000, _gen(12), dtype=torch.float64)
    assert x.mean().abs().item() < 0.02
    assert abs((x**3).mean().item()) < 0.02


# ---------------------------------------------------------------- GaussianClone.of

def test_clone_of_uses_fft_when_circulant_and_eigh_otherwise():
    m = NLGP(10, 2.0, 3.0)
    c = GaussianClone.of(m)
    assert isinstance(c.sampler, CirculantGaussian)
    assert torch.allclose(c.covariance(), GaussianClone(10, 2.0, 3.0).covariance(), atol=1e-12)
    assert c.sample(5, _gen(13)).shape == (5, 10)
    mo = NLGP(10, 2.0, 3.0, boundary="open", jitter=1e-3)
    co = GaussianClone.of(mo)
    assert isinstance(co.sampler, DenseGaussian)
    assert torch.allclose(co.covariance(), mo.covariance(), atol=1e-10)
    m2 = NLGP(4, 1.0, 3.0, dim=2)
    c2 = GaussianClone.of(m2)
    assert isinstance(c2.sampler, CirculantGaussian) and c2.sample(3, _gen(14)).shape == (3, 4, 4)
    y = c2.sample(50_000, _gen(15), dtype=torch.float64)
    assert _rel(_emp_cov(y), m2.covariance()) < 2e-2


def test_bad_arguments():
    with pytest.raises(ValueError, match="gain_convention"):
        NLGP(8, 1.0, 1.0, gain_convention="new")
    with pytest.raises(ValueError, match="gain"):
        NLGP(8, 1.0, 0.0)
    with pytest.raises(ValueError, match="variance"):
        NLGP(8, 1.0, 1.0, variance="approx")
    with pytest.raises(ValueError, match="clone_formula"):
        GaussianClone(8, 1.0, 1.0, clone_formula="approx")
    with pytest.raises(ValueError, match="n must"):
        nlgp_marginal_kurtosis(1.0, n=50)


@pytest.mark.cuda
def test_all_models_sample_on_the_cuda_generator_device():
    from featlab.data.elliptical import Elliptical, StudentT
    from featlab.data.ising import Ising
    from featlab.data.mixture import Mixture
    from featlab.data.norta import KurK

    g = torch.Generator(device="cuda").manual_seed(0)
    models = [NLGP(8, 1.5, 3.0), NLGP(4, 1.0, 3.0, dim=2, boundary="open", jitter=1e-3),
              GaussianClone(8, 1.5, 3.0), GaussianClone(8, 1.5, 3.0, boundary="open", jitter=1e-3),
              KurK(8, 1.5, 5.0), Elliptical(8, 1.5), StudentT(8, 1.5), StudentT(8, 1.5, df=5.5),
              Ising(8), Ising(8, boundary="open"), Ising(4, 2), Ising(4, 2, sampler="wolff"),
              Ising(4, 2, sampler="metropolis"), Ising(6, sampler="followup_metropolis"),
              Ising(6, sampler="original_metropolis")]
    for m in models:
        x = m.sample(64, g)
        assert x.device.type == "cuda" and x.dtype == torch.float32 and torch.isfinite(x).all(), m
    m = NLGP(8, 1.5, 3.0)
    x = m.sample(100_000, g, dtype=torch.float64)
    assert _rel(_emp_cov(x.cpu()), m.covariance()) < 1e-2
    x, c = Mixture(NLGP(8, 1.0, 3.0), NLGP(8, 1.5, 3.0)).sample(32, g)
    assert x.device.type == "cuda" and c.device.type == "cuda"


def test_every_latent_field_model_follows_the_psd_rule():
    """NLGP, its clone, Kur(k), elliptical and Student-t on an indefinite periodic kernel (L = 20,
    ξ = 10, 1D) are refused by default and clipped with a warning on request; the clone of a
    generic model (GaussianClone.of) follows the same rule."""
    from featlab.data.elliptical import Elliptical, StudentT
    from featlab.data.latent import IndefiniteCovarianceError
    from featlab.data.norta import KurK

    makers = {"nlgp": lambda **k: NLGP(20, 10.0, 3.0, **k),
              "clone": lambda **k: GaussianClone(20, 10.0, 3.0, **k),
              "kur": lambda **k: KurK(20, 10.0, 5.0, **k),
              "elliptical": lambda **k: Elliptical(20, 10.0, **k),
              "student": lambda **k: StudentT(20, 10.0, **k)}
    for name, make in makers.items():
        with pytest.raises(IndefiniteCovarianceError, match="L=20, xi=10, dim=1, boundary=periodic"):
            make()
        with pytest.warns(UserWarning, match="psd='clip'"):
            m = make(psd="clip")
        assert (m.latent.cov_error if hasattr(m, "latent") else m.cov_error) == pytest.approx(0.0623, abs=1e-3), name

    class Fake:  # a model whose covariance is indefinite (eigenvalues 3, -1)
        L, dim = 2, 1

        def covariance(self):
            return torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)

    with pytest.raises(IndefiniteCovarianceError):
        GaussianClone.of(Fake())
    with pytest.warns(UserWarning):
        assert GaussianClone.of(Fake(), psd="clip").cov_error == pytest.approx(0.5)
    # PSD inputs: the clone of a valid NLGP has round-off error only
    assert GaussianClone.of(NLGP(10, 2.0, 3.0)).cov_error < 1e-10
