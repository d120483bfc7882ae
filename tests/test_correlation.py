"""Matrix correlations (pearson / cosine / pearson_offdiag) and the Wishart random baseline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.probes import correlation

METRICS = ("pearson", "cosine", "pearson_offdiag")


def _pair(gen, d=6):
    A = torch.randn(d, d, generator=gen, dtype=torch.float64)
    B = A + 0.7 * torch.randn(d, d, generator=gen, dtype=torch.float64)
    return A @ A.T, B @ B.T


@pytest.mark.parametrize("metric", METRICS)
def test_identity_symmetry_scale_and_no_mutation(metric, gen):
    A, B = _pair(gen)
    A0, B0 = A.clone(), B.clone()
    assert abs(correlation(A, A, metric) - 1) < 1e-14
    r = correlation(A, B, metric)
    assert -1 <= r <= 1 and r < 0.999
    assert abs(correlation(B, A, metric) - r) < 1e-14
    assert abs(correlation(3.5 * A, 0.01 * B, metric) - r) < 1e-13
    assert torch.equal(A, A0) and torch.equal(B, B0)
    An = A.numpy().astype(np.float32)
    An0 = An.copy()
    assert abs(correlation(An, B.numpy(), metric) - r) < 1e-6
    assert np.array_equal(An, An0)


def test_convention_pearson_centres_cosine_does_not(gen):
    A, B = _pair(gen)
    shift = 100.0  # a large common mean makes cosine ≈ 1 but leaves Pearson unchanged
    assert correlation(A + shift, B + shift, "cosine") > 0.999
    assert abs(correlation(A + shift, B + shift, "pearson") - correlation(A, B, "pearson")) < 1e-12
    # closed form on two small vectors
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 5.0])
    ac, bc = a - a.mean(), b - b.mean()
    assert abs(correlation(a, b, "pearson") - float(ac @ bc / (ac.norm() * bc.norm()))) < 1e-7
    assert abs(correlation(a, b, "cosine") - float(a @ b / (a.norm() * b.norm()))) < 1e-7


def test_convention_offdiag_ignores_the_diagonal(gen):
    A, B = _pair(gen)
    D = torch.diag(torch.rand(6, generator=gen, dtype=torch.float64) * 50)
    assert abs(correlation(A + D, B, "pearson_offdiag") - correlation(A, B, "pearson_offdiag")) < 1e-12
    assert abs(correlation(A + D, B, "pearson") - correlation(A, B, "pearson")) > 1e-3


def test_bad_arguments(gen):
    A, _ = _pair(gen)
    with pytest.raises(ValueError, match="metric"):
        correlation(A, A, "spearman")
    with pytest.raises(ValueError, match="shape"):
        correlation(A, A[:3], "pearson")
    with pytest.raises(ValueError, match="square"):
        correlation(A[:3], A[:3], "pearson_offdiag")


def test_wishart_random_baseline(gen):
    """ρ(W₀ᵀW₀, W₁ᵀW₁) for independent N(0,1) filters (k_out, d) against Wishart moments.

    Entries of A = W₀ᵀW₀: diagonal mean k and variance 2k, off-diagonal mean 0 and variance k.
    To leading order in 1/d the ratio of expectations gives
    cosine ≈ k/(k+d+1) and pearson ≈ k(d−1)/(k(d−1)+d(d+1)) (the mean k/d removed).
    """
    k, d, R = 64, 75, 150
    rp, rc = [], []
    for _ in range(R):
        W0 = torch.randn(k, d, generator=gen, dtype=torch.float64)
        W1 = torch.randn(k, d, generator=gen, dtype=torch.float64)
        rp.append(correlation(W0.T @ W0, W1.T @ W1, "pearson"))
        rc.append(correlation(W0.T @ W0, W1.T @ W1, "cosine"))
    rp, rc = np.array(rp), np.array(rc)
    se_p, se_c = rp.std() / R ** 0.5, rc.std() / R ** 0.5
    # 4 standard errors plus 0.005 for the O(1/d) ratio-of-expectations bias
    assert abs(rp.mean() - k * (d - 1) / (k * (d - 1) + d * (d + 1))) < 4 * se_p + 0.005
    assert abs(rc.mean() - k / (k + d + 1)) < 4 * se_c + 0.005
    # the baseline is far from 0: a narrow first layer's inits "correlate" strongly
    assert rp.mean() > 0.4
