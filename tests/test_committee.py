"""TwoLayer (original committee) and the follow-up SimpleNet/MLP against closed forms."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as Fn

from featlab.models.committee import TwoLayer, committee_lrs, committee_norm, pm1_bias
from featlab.models.simplenet import MLP, SimpleNet


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_convention_pm1_bias_plus_for_first_half():
    assert pm1_bias(5).tolist() == [1.0, 1.0, -1.0, -1.0, -1.0]
    m = TwoLayer(10, 4, generator=_gen())
    assert m.b.tolist() == [1.0, 1.0, -1.0, -1.0] and isinstance(m.b, torch.nn.Parameter)
    f = TwoLayer(10, 4, bias="fixed", bias_value=0.5, generator=_gen())
    assert f.b.tolist() == [0.5, 0.5, -0.5, -0.5] and "b" not in dict(f.named_parameters())


def test_forward_matches_formula_float64():
    D, K = 12, 6
    for mode in ("mf", "lazy", "conv", "2layer"):
        m = TwoLayer(D, K, mode=mode, generator=_gen(1), dtype=torch.float64)
        x = torch.randn(7, D, generator=_gen(2), dtype=torch.float64)
        h = x @ m.w.T / math.sqrt(D) + m.b
        s = (torch.erf(h / math.sqrt(2)) * m.v).sum(1) / committee_norm(mode, K)
        torch.testing.assert_close(m(x), s, rtol=0, atol=1e-14)


def test_convention_outputs_and_loss_equal_reference_mse():
    """F.mse_loss([s, -s], 2·onehot(c) - 1) == (s - y)² with y = +1 for class 0."""
    m = TwoLayer(9, 4, generator=_gen(), dtype=torch.float64)
    x = torch.randn(11, 9, generator=_gen(3), dtype=torch.float64)
    c = torch.randint(0, 2, (11,), generator=_gen(4))
    ref = Fn.mse_loss(m.outputs(x), 2.0 * Fn.one_hot(c, 2).double() - 1)
    y = 1.0 - 2.0 * c.double()
    torch.testing.assert_close(m.loss(x, y), ref, rtol=1e-14, atol=0)
    assert torch.equal(m.outputs(x).argmax(1) == 0, m(x) >= 0)


def test_output_symmetry_odd_without_bias_broken_with_bias():
    x = torch.randn(5, 16, generator=_gen(5), dtype=torch.float64)
    with pytest.warns(UserWarning, match="chance"):
        m0 = TwoLayer(16, 4, bias="none", generator=_gen(), dtype=torch.float64)
    torch.testing.assert_close(m0(-x), -m0(x), rtol=0, atol=1e-15)
    m1 = TwoLayer(16, 4, generator=_gen(), dtype=torch.float64)
    assert (m1(-x) + m1(x)).abs().max() > 1e-3


def test_lr_table_and_bad_arguments():
    assert committee_lrs("mf", 0.05, 8, 400) == {"w": 0.4, "b": 0.4 / 400, "v": 0.0}
    lz = committee_lrs("lazy", 0.05, 4, 100)
    assert lz["w"] == pytest.approx(0.1) and lz["b"] == pytest.approx(0.001)
    assert committee_lrs("2layer", 0.05, 8, 400) == {"w": 0.05, "b": 0.05 / 400, "v": 0.05 / 400}
    assert set(TwoLayer(4, 2, mode="2layer", generator=_gen()).param_lrs(0.1)) == {"w", "b", "v"}
    with pytest.raises(ValueError, match="mode"):
        TwoLayer(4, 2, mode="deep")
    with pytest.raises(ValueError, match="bias"):
        TwoLayer(4, 2, bias="yes")


def test_init_std_and_generator_device():
    m = TwoLayer(400, 50, generator=_gen(7), dtype=torch.float64)
    assert abs(m.w.std().item() - 0.1) < 0.003  # 2e4 draws: std error ~5e-4
    assert torch.equal(m.w, TwoLayer(400, 50, generator=_gen(7), dtype=torch.float64).w)


def test_convention_simplenet_has_no_sqrt_d_and_xavier_scale():
    D, K = 300, 40
    net = SimpleNet(D, K, activation="relu", bias=True, init_scale=0.5, generator=_gen(), dtype=torch.float64)
    assert abs(net.w.std().item() - math.sqrt(2 / (D + K) * 0.5)) < 0.002
    x = torch.randn(6, D, generator=_gen(1), dtype=torch.float64)
    torch.testing.assert_close(net(x), torch.relu(x @ net.w.T + net.b).mean(1))
    mlp = MLP(D, K, activation="sigmoid", generator=_gen(), dtype=torch.float64)
    torch.testing.assert_close(mlp(x), torch.sigmoid(x @ mlp.w.T) @ mlp.a / K)
    assert set(dict(mlp.named_parameters())) == {"w", "a"}
    with pytest.raises(ValueError, match="activation"):
        SimpleNet(4, 1, activation="tanh")
