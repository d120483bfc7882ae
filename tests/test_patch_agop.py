"""Patch-AGOP: fast identity W̄ᵀKW̄ against the unfold + vmap(jacrev) oracle, closed forms, conventions."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from featlab.probes import PatchAGOPMethod, patch_agop
from featlab.probes._patch_agop import (
    conv_output_gram,
    conv_output_grams,
    unfold_patches,
)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


class _Residual(nn.Module):
    """A BasicBlock-like block: relu(conv2(relu(conv1(x))) + x), then a readout."""

    def __init__(self, c):
        super().__init__()
        self.stem = nn.Conv2d(2, 3, 3, padding=1)
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 5 * 5, c))

    def forward(self, x):
        h = torch.relu(self.stem(x))
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(h))) + h))


def _net(c, bias=True, padding_mode="zeros"):
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=bias, padding_mode=padding_mode), nn.ReLU(inplace=True),  # "0"
        nn.Conv2d(4, 3, 3, stride=2, bias=bias), nn.Tanh(),  # "2": strided, unpadded
        nn.Conv2d(3, 5, 1), nn.BatchNorm2d(5), nn.ReLU(),  # "4": 1×1
        nn.Flatten(), nn.Linear(5 * 2 * 2, c))


CASES = [  # (builder kwargs, layer)
    ({}, "0"), ({}, "2"), ({}, "4"), ({"bias": False}, "0"), ({"bias": False}, "2"),
    ({"padding_mode": "circular"}, "0"),
]


@pytest.mark.parametrize("kw,layer", CASES)
@pytest.mark.parametrize("c", [1, 10])
def test_fast_equals_oracle(kw, layer, c):
    torch.manual_seed(3)
    model = _net(c, **kw).double()
    with torch.no_grad():
        model[5].running_mean.uniform_(-0.5, 0.5)
        model[5].running_var.uniform_(0.5, 2.0)
    X = torch.randn(5, 2, 5, 5, dtype=torch.float64)
    fast = patch_agop(model, layer, X)
    oracle = patch_agop(model, layer, X, method=PatchAGOPMethod.ORACLE, batch_size=2)
    D = model.get_submodule(layer).weight[0].numel()
    assert fast.shape == oracle.shape == (D, D)
    assert _rel(fast, oracle) < 1e-10


@pytest.mark.parametrize("layer", ["conv1", "conv2", "stem"])
def test_fast_equals_oracle_in_residual_block(layer):
    torch.manual_seed(4)
    model = _Residual(10).double()
    X = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    fast = patch_agop(model, layer, X, chunk_size=3)
    assert _rel(fast, patch_agop(model, layer, X, method="oracle", chunk_size=4)) < 1e-10


def test_skip_path_is_excluded():
    """Zeroing conv2 leaves only the skip path downstream of conv1: the patch-AGOP of conv1 is 0."""
    torch.manual_seed(5)
    model = _Residual(3).double()
    with torch.no_grad():
        model.conv2.weight.zero_()
    X = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    for m in ("fast", "oracle"):
        assert float(patch_agop(model, "conv1", X, method=m).abs().max()) == 0.0


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (1, "same")])
def test_closed_form_conv_linear_readout(stride, padding, gen):
    """G = W̄ᵀ[Σ_ij R_ijᵀR_ij]W̄ for conv -> flatten -> linear, independent of the data."""
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding).double()
    Ho = conv(torch.zeros(1, 2, 6, 6, dtype=torch.float64)).shape[-1]
    lin = nn.Linear(3 * Ho * Ho, 4).double()
    model = nn.Sequential(conv, nn.Flatten(), lin)
    R = lin.weight.detach().reshape(4, 3, Ho, Ho)  # (c, k_out, Ho, Wo): R_ij = R[:, :, i, j]
    K = torch.einsum("ckij,clij->kl", R, R)  # Σ_ij R_ijᵀR_ij
    Wbar = conv.weight.detach().reshape(3, -1)
    expected = Wbar.T @ K @ Wbar
    for n in (1, 4):
        X = torch.randn(n, 2, 6, 6, generator=gen, dtype=torch.float64)
        assert _rel(patch_agop(model, "0", X), expected) < 1e-12


def test_convention_flatten_order_single_weight():
    o, c, r, s, q = 1, 2, 0, 2, 3
    conv = nn.Conv2d(3, 2, q, padding=1).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[o, c, r, s] = 1.5
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(2 * 16, 3)).double()
    idx = c * q * q + r * q + s
    Wbar = conv.weight.detach().reshape(2, -1)
    cnfm = Wbar.T @ Wbar
    G = patch_agop(model, "0", torch.randn(3, 3, 4, 4, dtype=torch.float64))
    for M in (cnfm, G):
        nz = (M != 0).nonzero().tolist()
        assert nz == [[idx, idx]]


def test_convention_single_pixel_lights_expected_unfold_coordinate():
    ch, y, x, q = 1, 3, 2, 3
    h = torch.zeros(1, 2, 6, 5, dtype=torch.float64)
    h[0, ch, y, x] = 1.0
    conv = nn.Conv2d(2, 1, q)  # stride 1, no padding: u_ij[c, r, s] = h[c, i + r, j + s]
    U = unfold_patches(h, conv)  # (1, 4, 3, 18)
    assert U.shape == (1, 4, 3, 2 * q * q)
    nz = sorted(tuple(t) for t in (U[0] != 0).nonzero().tolist())
    expected = sorted((y - r, x - s, ch * q * q + r * q + s) for r in range(q) for s in range(q)
                      if 0 <= y - r < 4 and 0 <= x - s < 3)
    assert nz == expected


@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding=2), dict(padding="same"),
                                dict(padding=1, padding_mode="circular"), dict(padding=(1, 0), padding_mode="reflect"),
                                dict(kernel_size=(3, 1), padding=(1, 0))])
def test_unfold_einsum_reproduces_conv(kw, gen):
    kw = {"kernel_size": 3, **kw}
    conv = nn.Conv2d(2, 4, **kw).double()
    h = torch.randn(3, 2, 7, 6, generator=gen, dtype=torch.float64)
    U = unfold_patches(h, conv)
    o = torch.einsum("bhwd,kd->bkhw", U, conv.weight.reshape(4, -1)) + conv.bias[:, None, None]
    assert torch.allclose(o, conv(h), atol=1e-12)


def test_memory_knobs_and_sketch(gen):
    torch.manual_seed(6)
    model = _net(10).double()
    X = torch.randn(7, 2, 5, 5, generator=gen, dtype=torch.float64)
    ref = patch_agop(model, "2", X)
    for bs, cs, st in [(1, None, "cpu"), (3, 4, "device"), (7, 10, "cpu")]:
        assert _rel(patch_agop(model, "2", X, batch_size=bs, chunk_size=cs, store_on=st), ref) < 1e-13
    reps = torch.stack([patch_agop(model, "2", X, outputs="sketch", n_sketch=5, generator=gen, chunk_size=5)
                        for _ in range(100)])
    se = reps.std(0) / 100 ** 0.5
    assert float(((reps.mean(0) - ref).abs() / se.clamp_min(1e-12)).max()) < 5.0
    _, info = patch_agop(model, "2", X, outputs="sketch", n_sketch=5, generator=gen, return_info=True)
    assert info.sketched and info.n_sketch == 5 and info.d == 36
    K, c = conv_output_gram(model, "2", X)
    assert K.shape == (3, 3) and c == 10


def test_refusals():
    model = _net(2).double()
    X = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="Conv2d"):
        patch_agop(model, "1", X)
    with pytest.raises(ValueError, match="outputs"):
        patch_agop(model, "0", X, outputs="some")
    with pytest.raises(ValueError, match="sketch"):
        patch_agop(model, "0", X, method="oracle", outputs="sketch", n_sketch=2)
    with pytest.raises(ValueError, match="method"):
        patch_agop(model, "0", X, method="slow")
    g = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten())
    with pytest.raises(NotImplementedError, match="groups"):
        patch_agop(g, "0", torch.randn(1, 2, 4, 4))
    model.train()
    with pytest.raises(ValueError, match="BatchNorm"):
        patch_agop(model, "0", X, force_eval=False)
    patch_agop(model, "0", X)
    assert model.training


def test_multi_layer_grams_equal_single_layer(gen):
    """The zero-δ multi-layer path gives each layer's K exactly as the single-layer leaf path."""
    torch.manual_seed(7)
    model = _Residual(4).double()
    X = torch.randn(5, 2, 5, 5, generator=gen, dtype=torch.float64)
    layers = ["stem", "conv1", "conv2"]
    Ks, c = conv_output_grams(model, layers, X, batch_size=2, chunk_size=3)
    assert c == 4
    for name in layers:
        assert _rel(Ks[name], conv_output_gram(model, name, X)[0]) < 1e-12


@pytest.mark.cuda
def test_cuda_matches_cpu():
    torch.manual_seed(8)
    model = _net(10).double()
    X = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    ref = patch_agop(model, "2", X)
    mc = copy.deepcopy(model).cuda()
    assert _rel(patch_agop(mc, "2", X.cuda()), ref) < 1e-10
    assert _rel(patch_agop(mc, "2", X.cuda(), store_on="device").cpu(), ref) < 1e-10
    g = torch.Generator(device="cuda").manual_seed(0)
    G = patch_agop(mc, "2", X.cuda(), outputs="sketch", n_sketch=4, generator=g)
    assert G.shape == ref.shape and G.device.type == "cpu"


def _hand_built_bias_free(model, idx, X):
    """Reference construction for a Sequential: the input h of conv ``idx`` is unfolded into independent
    patches, the conv is re-implemented as einsum(u, W̄) *without* its bias, the rest of the network
    follows, and vmap(jacrev) is taken w.r.t. the patches (convrfm ``PatchConvLayer``)."""
    from torch.func import jacrev, vmap

    conv = model[idx]
    with torch.no_grad():
        h = model[:idx](X)
    U = unfold_patches(h, conv)  # (n, Ho, Wo, D)
    Wbar = conv.weight.detach().reshape(conv.out_channels, -1)
    rest = model[idx + 1:]

    def f(u):
        o = torch.einsum("hwd,kd->khw", u, Wbar).unsqueeze(0)  # no bias
        return rest(o).reshape(-1)

    J = vmap(jacrev(f))(U)  # (n, c, Ho, Wo, D)
    flat = J.reshape(-1, J.shape[-1])
    return (flat.T @ flat / X.shape[0]).detach()


@pytest.mark.parametrize("layer", ["0", "2"])
def test_drop_bias_quirk_equals_a_hand_built_bias_free_construction(layer, gen):
    torch.manual_seed(9)
    model = _net(10).double().eval()
    with torch.no_grad():
        model[int(layer)].bias.uniform_(0.5, 1.5)  # large enough to matter through the nonlinearities
    X = torch.randn(4, 2, 5, 5, generator=gen, dtype=torch.float64)
    ref = _hand_built_bias_free(model, int(layer), X)
    for method in ("fast", "oracle"):
        assert _rel(patch_agop(model, layer, X, method=method, drop_bias=True), ref) < 1e-10
    assert _rel(patch_agop(model, layer, X), ref) > 1e-3  # the bias does change G
    # several layers share no pass: each layer loses only its own bias, as in the reference
    Ks, _ = conv_output_grams(model, ["0", "2", "4"], X, drop_bias=True)
    for name in ("0", "2", "4"):
        assert _rel(Ks[name], conv_output_gram(model, name, X, drop_bias=True)[0]) < 1e-12
    assert _rel(Ks["4"], conv_output_gram(model, "4", X)[0]) > 1e-6  # "4" has a bias too


def test_sandwich_equals_the_plain_product_and_is_symmetric(gen):
    from featlab.probes._patch_agop import sandwich

    W = torch.randn(7, 2500, generator=gen, dtype=torch.float64)
    A = torch.randn(7, 7, generator=gen, dtype=torch.float64)
    K = A @ A.T
    G = sandwich(W, K, block=600)  # 5 blocks, the last one short
    assert _rel(G, W.T @ K @ W) < 1e-13 and torch.equal(G, G.T) and G.dtype == torch.float64
    G32 = sandwich(W.float(), K)
    assert G32.dtype == torch.float64 and _rel(G32, W.T @ K @ W) < 1e-5


def test_convention_float32_model_products_keep_float32_accuracy(gen):
    """A float32 model runs its products in float32 and accumulates batches in float64: G equals the float64
    computation of the same network to float32 accuracy."""
    torch.manual_seed(4)
    model = _net(10)
    X = torch.randn(9, 2, 5, 5, generator=gen)
    for layer in ("0", "2"):
        G32 = patch_agop(model, layer, X, batch_size=4)
        G64 = patch_agop(copy.deepcopy(model).double(), layer, X.double())
        assert G32.dtype == torch.float64 and _rel(G32, G64) < 2e-5


def test_output_grams_refuse_a_layer_called_twice_or_never():
    # the shared _output_grads mechanism of the conv and linear output Grams
    from torch import nn

    from featlab.probes.output_gram import linear_output_grams

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.fc = nn.Linear(16, 2)
            self.unused = nn.Linear(16, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).flatten(1))

    net, X = Twice(), torch.randn(3, 1, 4, 4)
    with pytest.raises(ValueError, match="'conv' is called more than once per forward"):
        conv_output_grams(net, ["conv"], X)
    with pytest.raises(ValueError, match=r"layers \['unused'\] were not called"):
        linear_output_grams(net, ["fc", "unused"], X)
    assert not net.conv._forward_hooks and not net.fc._forward_hooks  # hooks removed on the way out
