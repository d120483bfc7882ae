"""SoftConv and ConvTwoLayer (spec emergence.md §4.2): slow-loop oracle, circular padding,
fixed readout, reference crash cases fixed."""
from __future__ import annotations

import math

import pytest
import torch

from featlab.models.softconv import ConvTwoLayer, SoftConv


def _gen(s=0):
    return torch.Generator().manual_seed(s)


def test_softconv_matches_slow_loop_1d():
    L, k = 9, 3
    m = SoftConv(L, 1, k=k, banks=2, activation="tanh", generator=_gen(), dtype=torch.float64)
    x = torch.randn(4, L, generator=_gen(1), dtype=torch.float64)
    h = torch.empty(4, 2, L, dtype=torch.float64)
    for f in range(2):
        for p in range(L):
            acc = m.bias[f].clone()
            for j in range(k):
                acc = acc + m.filters[f, j] * x[:, (p - (k - 1) // 2 + j) % L]
            h[:, f, p] = torch.tanh(acc)
    assert torch.allclose(m.hidden(x), h, atol=1e-12)
    assert torch.allclose(m(x), h.reshape(4, -1).sum(-1) / math.sqrt(2 * L), atol=1e-12)


def test_convention_circular_padding_wraps_and_output_is_translation_invariant():
    L = 8
    for dim in (1, 2):
        m = SoftConv(L, dim, k=3, banks=3, generator=_gen(2), dtype=torch.float64)
        x = torch.randn(5, *(L,) * dim, generator=_gen(3), dtype=torch.float64)
        xs = torch.roll(x, 2, dims=-1)
        assert torch.allclose(m.hidden(xs), torch.roll(m.hidden(x), 2, dims=-1), atol=1e-12)  # equivariant
        assert torch.allclose(m(xs), m(x), atol=1e-12)  # soft readout: invariant
    # a one-hot at site 0 reaches output position L-1 through the filter's last tap (wrap)
    m = SoftConv(L, 1, k=3, banks=1, init_bias_zero=True, activation="relu", dtype=torch.float64)
    with torch.no_grad():
        m.weight.zero_()
        m.weight[0, 0, 2] = 1.0
    e0 = torch.zeros(1, L, dtype=torch.float64)
    e0[0, 0] = 1.0
    assert m.hidden(e0)[0, 0, L - 1] == 1.0 and m.hidden(e0)[0, 0].sum() == 1.0


def test_softconv_readout_fixed_or_trained():
    m = SoftConv(10, 1, k=3, banks=2, soft=True)
    assert "readout" not in dict(m.named_parameters()) and set(m.param_lrs(0.1, 0.2, 0.3)) == {"weight", "bias"}
    assert torch.allclose(m.readout, torch.full_like(m.readout, 1 / math.sqrt(20)))
    t = SoftConv(10, 1, k=3, banks=2, soft=False, generator=_gen(4))
    assert "readout" in dict(t.named_parameters()) and t.param_lrs(0.1, 0.2, 0.3) == {"weight": 0.1, "bias": 0.3, "readout": 0.2}
    z = SoftConv(10, 1, k=3, banks=2, init_bias_zero=True)
    assert torch.equal(z.bias, torch.zeros(2))


def test_gradcheck():
    m = SoftConv(6, 1, k=3, banks=2, soft=False, generator=_gen(5), dtype=torch.float64)
    x = torch.randn(3, 6, generator=_gen(6), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: m(x), (x,))
    c = ConvTwoLayer(7, 1, K=2, k=3, activation="erf", train_bias=True, generator=_gen(7), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: c(x), (torch.randn(2, 7, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("L,k,dim", [(10, 4, 1), (10, 3, 1), (9, 4, 2), (8, 3, 2)])
def test_conv_two_layer_counts_pooled_units(L, k, dim):
    # reference bug 10: H_out^2 in 1D and odd H_out crash there; here num_hidden = actual count
    m = ConvTwoLayer(L, dim, K=3, k=k, generator=_gen(8), dtype=torch.float64)
    x = torch.randn(4, *(L,) * dim, generator=_gen(9), dtype=torch.float64)
    h = m.hidden(x)
    assert m.num_hidden == h[0].numel() == 3 * ((L - k + 1) // 2) ** dim
    assert torch.allclose(m(x), h.reshape(4, -1).mean(-1), atol=1e-12)
    assert torch.allclose(m.outputs(x), torch.stack([m(x), -m(x)], 1))


def test_conv_two_layer_readout_is_a_buffer_and_bias_iff_trained():
    m = ConvTwoLayer(10, 1, K=2, k=3)
    assert "fc2" in dict(m.named_buffers()) and m.bias is None
    assert m.to(torch.float64).fc2.dtype == torch.float64
    assert ConvTwoLayer(10, 1, K=2, k=3, train_bias=True).bias.shape == (2,)


def test_exception():
    with pytest.raises(ValueError, match="k:"):
        SoftConv(10, 1, k=4)
    with pytest.raises(ValueError, match="activation"):
        SoftConv(10, 1, activation="gelu")
    with pytest.raises(ValueError, match="dim"):
        ConvTwoLayer(10, 3)
    with pytest.raises(ValueError, match="k:"):
        ConvTwoLayer(4, 1, k=4)
