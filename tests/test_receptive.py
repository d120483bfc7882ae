"""Receptive-field position, width and tiling against closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest

from featlab.probes.receptive import (circular_centre, circular_std, concentration, fwhm, periodic_distance,
                                      position_moments, profile, rayleigh_test, tiling)

L = 40


def _bump(p, s, L=L):
    d = periodic_distance(np.arange(L), p, L)
    return np.exp(-d ** 2 / (2 * s ** 2))


@pytest.mark.parametrize("p", [0.3, 12.0, 17.6, 39.7])
def test_centre_of_bump_including_across_boundary(p):
    c = circular_centre(_bump(p, 2.5))
    assert 0 <= c < L and periodic_distance(c, p, L) < 0.05


def test_convention_centre_equivariant_under_roll():
    rng = np.random.default_rng(0)
    ell = rng.random(L) ** 4
    c0 = circular_centre(ell)
    for k in (1, 7, -3):
        assert periodic_distance(circular_centre(np.roll(ell, k)), c0 + k, L) < 1e-9


def test_concentration_and_circular_std():
    point = np.zeros(L)
    point[4] = 2.0
    assert concentration(point) == pytest.approx(1.0)
    assert concentration(np.ones(L)) == pytest.approx(0.0, abs=1e-12)
    assert circular_std(_bump(10, 2.0)) == pytest.approx(2.0, rel=0.02)


@pytest.mark.parametrize("method", ["linear", "spline"])
@pytest.mark.parametrize("s", [2.5, 4.0])
def test_fwhm_of_gaussian_bump(method, s):
    w = fwhm(_bump(13.3, s), method=method)
    assert abs(w - 2 * math.sqrt(2 * math.log(2)) * s) < 0.1


def test_fwhm_nan_for_non_unimodal_and_batched():
    two = _bump(5, 1.5) + _bump(25, 1.5)
    out = fwhm(np.stack([two, _bump(5, 3.0)]))
    assert out.shape == (2,) and np.isnan(out[0]) and np.isfinite(out[1])


def test_convention_profile_2d_rows_are_axis0():
    w = np.zeros((6, 6))
    w[4, 1] = 2.0  # row 4, column 1
    prof = profile(w.ravel(), 6, dim=2)
    assert prof.shape == (2, 6)
    assert prof[0].tolist() == [0, 0, 0, 0, 4, 0] and prof[1].tolist() == [0, 4, 0, 0, 0, 0]
    assert profile(np.arange(3.0), 3).tolist() == [0, 1, 4]
    with pytest.raises(ValueError, match="dim"):
        profile(w, 6, dim=3)


def test_position_moments_and_periodic_distance():
    mean, var = position_moments(_bump(38.5, 2.0))
    assert periodic_distance(mean, 38.5, L) < 0.05 and var == pytest.approx(4.0, rel=0.02)
    assert periodic_distance(1, 39, 40) == 2 and periodic_distance(5, 25, 40) == 20


def test_rayleigh_and_tiling():
    even = np.arange(10) * 4.0 + 1
    R, p = rayleigh_test(even, L)
    assert R < 1e-12 and p == pytest.approx(1.0)
    R, p = rayleigh_test(np.array([3.0, 3.5, 4.0, 2.5, 3.2, 3.9, 2.8, 3.1]), L)
    assert R > 0.9 and p < 1e-3
    t = tiling(even, L)
    assert t["mean_nn_spacing"] == pytest.approx(4.0) and t["uniform_spacing"] == 4.0 and t["n"] == 10
