"""The emergence task: Mixture and targets (spec emergence.md §3)."""
from __future__ import annotations

import pytest
import torch

from featlab.data.clone import GaussianClone
from featlab.data.ising import Ising
from featlab.data.mixture import Mixture, targets
from featlab.data.nlgp import NLGP


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _emp_cov(x):
    x = x.reshape(x.shape[0], -1).double()
    return x.T @ x / x.shape[0]


def test_mixture_labels_balanced_and_classes_from_their_models():
    mix = Mixture(NLGP(10, 1.0, 3.0), GaussianClone(10, 2.0, 3.0))
    x, c = mix.sample(60_000, _gen(1), dtype=torch.float64)
    assert x.shape == (60_000, 10) and c.dtype == torch.int64 and set(c.unique().tolist()) == {0, 1}
    assert c.double().mean().item() == pytest.approx(0.5, abs=0.01)
    for k in (0, 1):
        S = mix.covariance(k)
        assert ((_emp_cov(x[c == k]) - S).norm() / S.norm()).item() < 0.03
    # class 0 is the NLGP (sub-Gaussian marginal), class 1 the clone (Gaussian)
    kurt = lambda v: ((v**4).mean() / (v**2).mean() ** 2).item()
    assert kurt(x[c == 0]) < 2.0 and kurt(x[c == 1]) == pytest.approx(3.0, abs=0.1)


def test_convention_targets():
    c = torch.tensor([0, 1, 1, 0])
    assert targets(c).tolist() == [1.0, -1.0, -1.0, 1.0]  # original: class 0 (short ξ) -> +1
    assert targets(c, "followup").tolist() == [0.0, 1.0, 1.0, 0.0]  # follow-up: long ξ -> 1
    with pytest.raises(ValueError, match="convention"):
        targets(c, "pm1")


def test_convention_class0_short_xi_warns_when_reversed():
    with pytest.warns(UserWarning, match="class 0"):
        Mixture(NLGP(8, 1.5, 3.0), NLGP(8, 1.0, 3.0))
    Mixture(Ising.from_temperature(3.0, 8), Ising.from_temperature(1.0, 8))  # ξ 0.88 < 3.67: fine


def test_mixture_shapes_and_bad_arguments():
    mix = Mixture(NLGP(5, 1.0, 3.0, dim=2), NLGP(5, 1.5, 3.0, dim=2))
    x, c = mix.sample(10, _gen(2))
    assert x.shape == (10, 5, 5) and x.dtype == torch.float32
    with pytest.raises(ValueError, match="same L"):
        Mixture(NLGP(4, 1.0, 3.0), NLGP(5, 1.0, 3.0))
    with pytest.raises(ValueError, match="c must"):
        mix.covariance(2)
