"""SimpleCNN (spec diffeo_pooling §6.3, §10 "1D CNN")."""
from __future__ import annotations

import math

import pytest
import torch

from featlab.models.simple_cnn import SimpleCNN, circular_padding
from featlab.probes.hooks import capture


def _lengths(net, x):
    with capture(net, net.block_names) as cache:
        net(x)
    return [cache[n][0].shape[-1] for n in net.block_names]


def test_convention_stride_all_halves_lengths():
    torch.manual_seed(0)
    net = SimpleCNN(dim=1, F=2, stride_layers="all", depth=5, width=4)
    assert _lengths(net, torch.randn(2, 1, 64)) == [32, 16, 8, 4, 2]


def test_convention_stride_first_as_published():
    torch.manual_seed(0)
    net = SimpleCNN(dim=1, F=2, stride_layers="first", depth=4, width=4)
    assert net.strides == [2, 1, 1, 1]
    assert _lengths(net, torch.randn(2, 1, 64)) == [32, 32, 32, 32]
    assert SimpleCNN(stride_layers="none", depth=3, width=2).strides == [1, 1, 1]


def test_convention_circular_padding_widths():
    assert circular_padding(2) == (0, 1)
    assert circular_padding(3) == (1, 1)
    assert circular_padding(4) == (1, 2)
    assert circular_padding(5) == (2, 2)


@pytest.mark.parametrize("F", [2, 3, 4])
def test_block_matches_explicit_circular_formula(F):
    """Block 0 without stride: out[c, i] = √F·relu(b_c + Σ_j W[c, 0, j]·x[(i − left + j) mod L]/√F)."""
    torch.manual_seed(1)
    net = SimpleCNN(dim=1, F=F, stride_layers="none", depth=1, width=3).double()
    x = torch.randn(2, 1, 11, dtype=torch.float64)
    with capture(net, ["blocks.0"]) as cache:
        net(x)
    h = cache["blocks.0"][0]
    W, b = net.blocks[0].weight, net.blocks[0].bias
    left = circular_padding(F)[0]
    L = x.shape[-1]
    ref = torch.zeros(2, 3, L, dtype=torch.float64)
    for i in range(L):
        for j in range(F):
            ref[:, :, i] += W[:, 0, j] * x[:, 0, (i - left + j) % L][:, None] / math.sqrt(F)
    ref = math.sqrt(F) * torch.relu(ref + b[None, :, None])
    assert torch.allclose(h, ref, atol=1e-12)


def test_convention_output_formula_gap_readout():
    torch.manual_seed(2)
    alpha = 0.3
    net = SimpleCNN(dim=1, F=2, depth=3, width=5, alpha=alpha).double()
    x = torch.randn(4, 1, 16, dtype=torch.float64)
    with capture(net, ["blocks.2"]) as cache:
        out = net(x)
    hbar = cache["blocks.2"][0].mean(-1)  # (B, H)
    ref = (net.readout.bias + hbar @ net.readout.beta / 5) * alpha
    assert out.shape == (4, 1) and torch.allclose(out, ref, atol=1e-12)


def test_2d_and_scalings_agree_in_distribution_shape():
    torch.manual_seed(3)
    net = SimpleCNN(dim=2, F=3, stride_layers="all", depth=3, width=6, out_dim=2)
    assert _lengths(net, torch.randn(2, 1, 16, 16)) == [8, 4, 2]
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 2)
    # standard scaling = ntk scaling with factors folded into the parameters
    torch.manual_seed(4)
    a = SimpleCNN(dim=1, depth=2, width=8, scaling="ntk").double()
    b = SimpleCNN(dim=1, depth=2, width=8, scaling="standard").double()
    with torch.no_grad():
        for ba, bb in zip(a.blocks, b.blocks):
            bb.weight.copy_(ba.weight * ba.norm)
            bb.bias.copy_(ba.bias)
        b.readout.beta.copy_(a.readout.beta / 8)
        b.readout.bias.copy_(a.readout.bias)
    x = torch.randn(3, 1, 16, dtype=torch.float64)
    assert torch.allclose(a(x), b(x), atol=1e-12)


def test_tanh_activation_is_odd_without_bias():
    torch.manual_seed(5)
    net = SimpleCNN(dim=1, depth=2, width=4, activation="tanh").double()
    with torch.no_grad():
        for blk in net.blocks:
            blk.bias.zero_()
    x = torch.randn(2, 1, 8, dtype=torch.float64)
    with capture(net, ["blocks.1"]) as c:
        net(x)
        net(-x)
    assert torch.allclose(c["blocks.1"][0], -c["blocks.1"][1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="stride_layers"):
        SimpleCNN(stride_layers="odd")
    with pytest.raises(ValueError, match="activation"):
        SimpleCNN(activation="gelu")
    with pytest.raises(ValueError, match="depth"):
        SimpleCNN(depth=0)
