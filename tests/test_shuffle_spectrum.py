"""Channel shuffling keeps spatial kernels; grid-Laplacian spectra against closed forms."""
import math

import pytest
import torch
from torch import nn

from featlab.probes import grid_laplacian, laplacian_spectrum, shuffle_channels
from featlab.probes.shuffle import permute_channels

f64 = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 2)).double()


def _multiset(W):  # sorted list of the spatial kernels of one output filter
    return sorted(tuple(k.flatten().tolist()) for k in W)


# ---------------------------------------------------------------- shuffling
def test_shuffle_keeps_every_kernel_multiset_and_spectrum_and_other_params():
    net = _net()
    sh = shuffle_channels(net, _g(1))
    for name in ("0.weight", "3.weight"):
        W, Ws = dict(net.named_parameters())[name], dict(sh.named_parameters())[name]
        assert not torch.equal(W, Ws)  # something moved
        for o in range(W.shape[0]):
            assert _multiset(W[o]) == _multiset(Ws[o])
        # one pi per layer, shared by all output filters: Ws = W[:, pi]
        pi = [next(c for c in range(W.shape[1]) if torch.equal(Ws[0, j], W[0, c])) for j in range(W.shape[1])]
        assert torch.equal(Ws, W[:, pi])
        a, b = laplacian_spectrum(W), laplacian_spectrum(Ws)
        assert torch.allclose(a.gamma, b.gamma, rtol=1e-12, atol=0)
    sd, sds = net.state_dict(), sh.state_dict()
    for k in sd:
        if not k.endswith("weight") or k in ("1.weight", "6.weight"):
            assert torch.equal(sd[k], sds[k]), k  # biases, BN (incl. running stats), linear
    assert torch.equal(net[0].weight, _net()[0].weight)  # the original is left alone


def test_identity_permutation_is_the_same_function():
    net = _net().eval()
    ident = {n: (torch.arange(p.shape[1]), None) for n, p in net.named_parameters() if p.ndim == 4}
    x = torch.randn(4, 3, 6, 6, generator=_g(), dtype=f64)
    assert torch.equal(permute_channels(net, ident).eval()(x), net(x))


def test_shuffle_seed_reproduces_and_in_out_mode_permutes_outputs():
    net = _net()
    a, b = shuffle_channels(net, _g(3)), shuffle_channels(net, _g(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = shuffle_channels(net, _g(3), mode="in_out_reference")
    W, Wc = net[3].weight, c[3].weight
    assert sorted(_multiset(W.flatten(0, 1))) == sorted(_multiset(Wc.flatten(0, 1)))
    assert torch.equal(c[3].bias, net[3].bias)
    with pytest.raises(ValueError, match="mode must be one of"):
        shuffle_channels(net, _g(), mode="out")


# ---------------------------------------------------------------- Laplacian spectra
@pytest.mark.parametrize("F, expected", [(2, [0, 2, 2, 4]), (3, [0, 1, 1, 2, 3, 3, 4, 4, 6])])
def test_laplacian_eigenvalues_small_F(F, expected):
    lam, V = torch.linalg.eigh(grid_laplacian(F))
    assert torch.allclose(lam, torch.tensor(expected, dtype=f64), atol=1e-12)
    assert torch.allclose(V.T @ V, torch.eye(F * F, dtype=f64), atol=1e-12)


@pytest.mark.parametrize("F", [3, 4, 5])
def test_eigenspaces_equal_dct2_eigenspaces(F):
    L = grid_laplacian(F)
    mu = [2 - 2 * math.cos(math.pi * a / F) for a in range(F)]
    r = torch.arange(F, dtype=f64)
    for a in range(F):
        for b in range(F):
            psi = torch.outer(torch.cos(math.pi * a * (r + 0.5) / F), torch.cos(math.pi * b * (r + 0.5) / F))
            v = psi.reshape(-1)
            assert torch.allclose(L @ v, (mu[a] + mu[b]) * v, atol=1e-12)  # DCT-II eigenvector
    # projector onto each eigh eigenspace equals the DCT-II one
    lam, V = torch.linalg.eigh(L)
    C = torch.stack([torch.cos(math.pi * a * (r + 0.5) / F) for a in range(F)])  # (F, F)
    C = C / C.norm(dim=1, keepdim=True)
    D = torch.einsum("ar,bs->abrs", C, C).reshape(F * F, F * F)  # rows: psi_ab
    lamD = torch.tensor([mu[a] + mu[b] for a in range(F) for b in range(F)], dtype=f64)
    for val in lam.unique(sorted=True):
        if (lam - val).abs().min() > 1e-9:
            continue
        P1 = V[:, (lam - val).abs() < 1e-9] @ V[:, (lam - val).abs() < 1e-9].T
        Dm = D[(lamD - val).abs() < 1e-9]
        assert torch.allclose(P1, Dm.T @ Dm, atol=1e-10)


def test_convention_grid_laplacian_is_row_major_neumann():
    L = grid_laplacian(3)
    assert L[0, 1] == -1 and L[0, 3] == -1 and L[0, 4] == 0  # (0,0)-(0,1) and (0,0)-(1,0)
    assert L[2, 3] == 0  # (0,2) and (1,0) are not neighbours (no wrap)
    assert torch.equal(L.diagonal(), torch.tensor([2, 3, 2, 3, 4, 3, 2, 3, 2], dtype=f64))


def test_iid_filters_give_flat_gamma_constant_filter_only_lambda0():
    s = 0.7
    W = s * torch.randn(400, 50, 3, 3, generator=_g(4), dtype=f64)
    sp = laplacian_spectrum(W, merge_degenerate=False)
    # 20000 slices: rel. std of each gamma ~ sqrt(2/20000) = 1%
    assert torch.allclose(sp.gamma, torch.full((9,), s ** 2, dtype=f64), rtol=0.05)
    m = laplacian_spectrum(W)
    assert torch.allclose(m.gamma / m.multiplicity, torch.full_like(m.gamma, s ** 2), rtol=0.05)
    c = laplacian_spectrum(torch.ones(2, 3, 3, 3), normalise=False)
    assert c.gamma[0] == pytest.approx(9.0, abs=1e-12) and c.gamma[1:].abs().max() < 1e-12
    n = laplacian_spectrum(torch.ones(2, 3, 3, 3), normalise=True)
    assert n.gamma[0] == pytest.approx(1.0, abs=1e-12)
    assert torch.equal(m.multiplicity, torch.tensor([1, 2, 1, 2, 2, 1]))


def test_merged_sums_are_invariant_to_rotations_inside_an_eigenspace():
    F = 3
    lam, V = torch.linalg.eigh(grid_laplacian(F))
    W = torch.randn(30, F, F, generator=_g(5), dtype=f64)
    # rotate the kernels' components inside the lambda = 1 eigenspace (2-dim): merged sums fixed
    idx = ((lam - 1).abs() < 1e-9).nonzero().flatten()
    th = 0.7
    Rm = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=f64)
    c = W.reshape(30, -1) @ V  # (30, 9) coefficients
    c[:, idx] = c[:, idx] @ Rm.T
    W2 = (c @ V.T).reshape(30, F, F)
    a, b = laplacian_spectrum(W), laplacian_spectrum(W2)
    assert torch.allclose(a.gamma, b.gamma, rtol=1e-12)
    ua, ub = laplacian_spectrum(W, merge_degenerate=False), laplacian_spectrum(W2, merge_degenerate=False)
    assert not torch.allclose(ua.gamma, ub.gamma, rtol=1e-6)  # unmerged entries do move


def test_exception_non_square_kernel():
    with pytest.raises(ValueError, match="weight must have shape"):
        laplacian_spectrum(torch.ones(2, 3, 3, 2))
