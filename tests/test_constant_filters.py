"""Constant-filter CNN theory (spec diffeo_pooling §7, §10 "Networks and theory")."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featlab.theory.cnn_constant_filters import (
    PREDICTED_EXPONENTS,
    constant_filters,
    fit_exponent,
    receptive_field_sizes,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def stride():
    return constant_filters(F=2, s=2, depth=8, N=1024, n_images=256, generator=_gen())


@pytest.fixture(scope="module")
def nostride():
    return constant_filters(F=3, s=1, depth=1500, N=1024, n_images=4, n_noise=32, fit_A=(2.5, None),
                            generator=_gen())


@pytest.mark.parametrize("q", ["D", "G", "R"])
def test_stride_exponents_match_theory(stride, q):
    assert stride.decades >= 1.5
    assert abs(stride.exponents[q] - PREDICTED_EXPONENTS["stride"][q]) < 0.2, stride.exponents


@pytest.mark.parametrize("q", ["D", "G", "R"])
def test_nostride_exponents_match_theory(nostride, q):
    assert nostride.decades >= 1.5
    assert abs(nostride.exponents[q] - PREDICTED_EXPONENTS["nostride"][q]) < 0.2, nostride.exponents


def test_zero_mean_noise_removes_G_growth_with_stride(stride):
    r = constant_filters(F=2, s=2, depth=8, N=1024, n_images=128, noise="zero_mean", bias=1.0,
                         generator=_gen(1))
    assert abs(r.exponents["G"]) < 0.2 and stride.exponents["G"] > 0.8
    assert abs(r.exponents["D"] + 1) < 0.2  # the diffeo part does not care about the noise


@pytest.mark.parametrize("kw", [dict(F=3, n_images=8, n_noise=4), dict(F=2, n_noise=2),
                                dict(F=2, n_noise=2, noise="zero_mean", bias=5.0)])
def test_spectral_equals_layer_by_layer_simulation(kw):
    a = constant_filters(s=1, depth=25, N=48, method="simulate", generator=_gen(2), **kw)
    b = constant_filters(s=1, depth=25, N=48, method="spectral", generator=_gen(2), **kw)
    for q in ("deno", "D_num", "G_num"):
        np.testing.assert_allclose(getattr(a, q), getattr(b, q), rtol=1e-10, atol=1e-14)


def test_convention_receptive_field_participation_ratio():
    A = receptive_field_sizes(2, 2, 6, 256)
    np.testing.assert_allclose(A, 2.0 ** np.arange(7))  # box of width s^k
    A = receptive_field_sizes(3, 1, 400, 512)
    sigma = math.sqrt(400 * (9 - 1) / 12)
    assert abs(A[-1] / (2 * math.sqrt(math.pi) * sigma) - 1) < 0.01  # Gaussian limit, ∝ √k
    assert A[1] == pytest.approx(3.0)


def test_convention_mean_protocol_at_the_input():
    """k = 0: one-hot probes at all N positions: deno = 2(1 − 1/N), D_num = 2, ‖η‖² = 2."""
    N = 64
    r = constant_filters(F=2, s=2, depth=2, N=N, noise="zero_mean", generator=_gen(3))
    assert r.deno[0] == pytest.approx(2 * (1 - 1 / N), rel=1e-12)
    assert r.D_num[0] == pytest.approx(2.0, rel=1e-12)
    assert r.G_num[0] == pytest.approx(2.0, rel=1e-12)
    # with stride and s = F the layer-k response is a block indicator: D_num_k = 2/2^k exactly
    np.testing.assert_allclose(r.D_num, 2.0 / 2.0 ** np.arange(3), rtol=1e-12)


def test_fit_exponent_recovers_power_law():
    A = np.logspace(0, 2, 10)
    assert fit_exponent(A, 3 * A ** -1.7) == pytest.approx(-1.7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="noise"):
        constant_filters(noise="white")
    with pytest.raises(ValueError, match="divisible"):
        constant_filters(F=2, s=2, depth=5, N=48)
    with pytest.raises(ValueError, match="spectral"):
        constant_filters(s=2, method="spectral")
