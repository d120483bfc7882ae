"""IPR, participation ratio, baseline and kurtosis link against closed forms and Monte Carlo."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featlab.probes._ipr import ipr, ipr_baseline, localised, participation_ratio, preactivation_kurtosis


def test_convention_ipr_high_means_localised_closed_forms():
    D = 64
    one_hot = np.zeros(D)
    one_hot[5] = -2.0
    assert ipr(one_hot) == pytest.approx(1.0)
    assert ipr(np.full(D, 0.3)) == pytest.approx(1 / D)
    i = np.arange(D)
    assert ipr(np.cos(2 * np.pi * 3 * i / D + 0.4)) == pytest.approx(3 / (2 * D))
    assert ipr(one_hot) > ipr(np.ones(D))
    assert np.isnan(ipr(np.zeros(D)))


@pytest.mark.parametrize("s", [2.0, 3.5])
def test_gaussian_bumps_1d_and_2d(s):
    L = 64
    d = np.minimum(np.arange(L), L - np.arange(L))
    bump = np.exp(-d ** 2 / (2 * s ** 2))
    assert ipr(bump) == pytest.approx(1 / (s * math.sqrt(2 * math.pi)), rel=1e-3)
    bump2 = np.outer(bump, bump).ravel()
    assert ipr(bump2) == pytest.approx(1 / (2 * math.pi * s ** 2), rel=2e-3)


def test_iid_gaussian_baseline_monte_carlo():
    D, n = 50, 10_000
    w = torch.randn(n, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = ipr(w)
    assert v.shape == (n,) and isinstance(v, torch.Tensor)
    se = v.std().item() / math.sqrt(n)
    assert abs(v.mean().item() - ipr_baseline(D)) < 3 * se
    assert ipr_baseline(400) == pytest.approx(0.0074626, rel=1e-4)


def test_participation_ratio_times_ipr_is_one():
    w = torch.randn(7, 30, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(participation_ratio(w) * ipr(w), torch.ones(7, dtype=torch.float64))


def test_localised_threshold():
    D = 100
    w = np.zeros((2, D))
    w[0, :3] = 1.0  # IPR 1/3 > 5 * 3/102
    w[1] = 1.0      # IPR 1/100
    assert localised(w).tolist() == [True, False]
    assert localised(w, factor=20).tolist() == [False, False]  # 20*3/102 = 0.59 > 1/3
    with pytest.raises(ValueError, match="factor"):
        localised(w, factor=0)


def test_kurtosis_link_iid_uniform_inputs():
    """κ(w·x) − 3 = (κ_x − 3)·IPR(w) for iid uniform x (κ_x = 9/5)."""
    g = torch.Generator().manual_seed(2)
    D, n = 20, 400_000
    x = (torch.rand(n, D, generator=g, dtype=torch.float64) - 0.5) * math.sqrt(12)
    d = torch.arange(D, dtype=torch.float64)
    w = torch.stack([torch.exp(-(d - 7) ** 2 / 4), torch.ones(D), torch.eye(D)[3]])  # (3, D)
    k = preactivation_kurtosis(w, x, chunk_size=65_536)
    expected = 3 + (1.8 - 3) * ipr(w)
    torch.testing.assert_close(k, expected, atol=0.02, rtol=0)
    k2 = preactivation_kurtosis(w, x[:5000], chunk_size=777)
    torch.testing.assert_close(k2, preactivation_kurtosis(w, x[:5000], chunk_size=5000), rtol=1e-12, atol=0)
