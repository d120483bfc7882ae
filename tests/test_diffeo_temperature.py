"""Temperature identities and the realised displacement variance (mode sum vs Monte Carlo)."""
import math

import pytest
import torch

from featlab.diffeo import (displacement_stats, sample_displacement, temperature_range,
                            typical_displacement, typical_temperature)
from featlab.diffeo.temperature import displacement_variance


@pytest.mark.parametrize("delta, c, n", [(1.0, 3, 32), (0.3, 5, 28), (2.5, 2, 64)])
def test_temperature_identities(delta, c, n):
    T = typical_temperature(delta, c, n)
    assert typical_displacement(T, c, n) == pytest.approx(delta, rel=1e-14)
    Tmin, Tmax = temperature_range(n, c)
    assert typical_displacement(Tmin, c, n) == pytest.approx(0.5, rel=1e-14)
    assert T / Tmax == pytest.approx(math.pi ** 2 * c ** 2 * delta ** 2 / n ** 2, rel=1e-14)
    assert Tmin == pytest.approx(1 / (math.pi * n ** 2 * math.log(c)), rel=1e-15)


@pytest.mark.parametrize("fn, args", [(temperature_range, (32, 1)), (typical_temperature, (1.0, 1, 32)),
                                      (typical_displacement, (1e-3, 1, 32)),
                                      (typical_displacement, (-1.0, 3, 32))])
def test_exception_cut_below_2_or_negative_T(fn, args):
    with pytest.raises(ValueError) as e:
        fn(*args)
    assert "\n" not in str(e.value) and ("cut" in str(e.value) or "T must" in str(e.value))


def test_monte_carlo_variance_equals_mode_sum():
    n, c, T, S = 15, 4, 2e-3, 4000
    d = sample_displacement(S, n, T, c, torch.Generator().manual_seed(0))
    emp = d.pow(2).mean(0)  # (2, n, n)
    var = displacement_variance(n, c, T)  # (n, n) [y, x] for dx
    inner = (slice(1, -1), slice(1, -1))
    # each pixel: relative std sqrt(2/S) = 2.2%; allow 5 sigma
    assert torch.allclose(emp[0][inner], var[inner], rtol=0.11)
    assert torch.allclose(emp[1][inner], var.T[inner], rtol=0.11)
    assert float(emp[0].mean() / var.mean()) == pytest.approx(1.0, rel=0.03)


def test_stats_centre_is_the_mode_sum_at_the_middle_pixel():
    n, c, T = 17, 3, typical_temperature(1.0, 3, 17)  # odd n: pixel 8 is x~ = 1/2
    st = displacement_stats(n, c, T, n_samples=50, generator=torch.Generator().manual_seed(0))
    var = displacement_variance(n, c, T)
    assert st["rms_centre"] == pytest.approx(float(var[8, 8].sqrt()), rel=1e-12)
    assert st["rms_mean"] == pytest.approx(float(var.mean().sqrt()), rel=1e-12)
    assert st["delta_nominal"] == pytest.approx(1.0)
    # the nominal delta is an asymptote: the realised centre RMS differs from it
    assert 0.5 < st["rms_centre"] < 1.0 and st["max_mean"] > st["rms_centre"]
