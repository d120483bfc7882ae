"""CNTK/NNGP of the Vanilla net: Monte-Carlo wide nets, sqrt(M) convention, W_std invariance, PSD."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from featlab.kernels._cntk import cntk, relu_kappa


def _imgs(n=5, c=2, H=5, W=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, H, W, generator=g, dtype=torch.float64), g


def _mc_features(X, depth, width, g, q=3):
    """sqrt(2) ReLU features of a random Vanilla net, weights N(0, 1/fan_in); (n, width, H, W)."""
    h = X
    for _ in range(depth):
        W = torch.randn(width, h.shape[1], q, q, generator=g, dtype=torch.float64) / math.sqrt(h.shape[1] * q * q)
        h = math.sqrt(2) * F.relu(F.conv2d(h, W))
    return h


def test_depth1_nngp_matches_monte_carlo_wide_net():
    X, g = _imgs(n=5)
    width = 4096
    phi = _mc_features(X, 1, width, g)  # (n, w, 3, 3)
    per_channel = torch.einsum("xkhw,zkhw->kxz", phi, phi) / (phi.shape[-1] * phi.shape[-2])  # (w, n, n)
    est, se = per_channel.mean(0), per_channel.std(0) / math.sqrt(width)
    K = cntk(X, depth=1, kind="nngp")
    assert ((est - K).abs() <= 4 * se + 1e-12).all(), ((est - K).abs() / se).max()


def test_depth2_nngp_matches_monte_carlo_within_standard_errors():
    X, g = _imgs(n=4, H=6, W=6)
    width, n_draws = 256, 12
    est = torch.stack([torch.einsum("xkhw,zkhw->xz", p, p) / (width * p.shape[-1] * p.shape[-2])
                       for p in (_mc_features(X, 2, width, g) for _ in range(n_draws))])  # (draws, n, n)
    se = est.std(0) / math.sqrt(n_draws)
    K = cntk(X, depth=2, kind="nngp")
    # 4 standard errors of the draw mean; the O(1/width) finite-width bias is below that here
    assert ((est.mean(0) - K).abs() <= 4 * se).all(), ((est.mean(0) - K).abs() / se).max()


def test_convention_M_inside_kernel_equals_sqrtM_on_patches():
    X, g = _imgs(n=4)
    B = torch.randn(18, 18, generator=g, dtype=torch.float64)
    M = B @ B.T / 18
    w, U = torch.linalg.eigh(M)
    S = (U * w.clamp(min=0).sqrt()) @ U.T
    torch.testing.assert_close(cntk(X, M=M, depth=2), cntk(X, sqrtM=S, depth=2), rtol=1e-10, atol=1e-12)


def test_max_normalised_kernel_invariant_to_W_std():
    X, _ = _imgs(n=4, H=7, W=7)
    K1, K3 = cntk(X, depth=3), cntk(X, depth=3, W_std=3.0)
    assert not torch.allclose(K1, K3)
    torch.testing.assert_close(K1 / K1.max(), K3 / K3.max(), rtol=1e-10, atol=1e-12)


def test_kernel_symmetric_psd_chunk_invariant_and_grad_finite():
    X, _ = _imgs(n=8, H=6, W=6)
    K = cntk(X, depth=2, padding=True)
    torch.testing.assert_close(K, K.T)
    ev = torch.linalg.eigvalsh(K)
    assert ev.min() >= -1e-10 * ev.max()
    torch.testing.assert_close(cntk(X, depth=2, padding=True, chunk_size=3), K, rtol=1e-12, atol=1e-14)
    Z = X[:2].clone().requires_grad_(True)  # coincides with training images; zero padding patches
    cntk(Z, X, depth=2, padding=True).sum().backward()
    assert torch.isfinite(Z.grad).all()


def test_relu_kappa_closed_form_values():
    k1, k0 = relu_kappa(torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(k1, torch.tensor([1.0, 1 / math.pi, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(k0, torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)


def _empirical_ntk(X, width, g, q=3):
    """Empirical NTK of a depth-2 Vanilla net in NTK parametrisation (all weights N(0, 1))."""
    c = X.shape[1]
    W1 = torch.randn(width, c, q, q, generator=g, dtype=torch.float64).requires_grad_(True)
    W2 = torch.randn(width, width, q, q, generator=g, dtype=torch.float64).requires_grad_(True)
    h = math.sqrt(2) * F.relu(F.conv2d(X, W1) / math.sqrt(c * q * q))
    h = math.sqrt(2) * F.relu(F.conv2d(h, W2) / math.sqrt(width * q * q))
    P = h.shape[-1] * h.shape[-2]
    v = torch.randn(width * P, generator=g, dtype=torch.float64).requires_grad_(True)
    f = h.flatten(1) @ v / math.sqrt(width * P)
    J = torch.stack([torch.cat([t.flatten() for t in torch.autograd.grad(f[i], (W1, W2, v), retain_graph=True)])
                     for i in range(len(f))])
    return J @ J.T


def test_depth2_ntk_matches_empirical_ntk_of_wide_nets():
    X, g = _imgs(n=3, H=6, W=6)
    E = torch.stack([_empirical_ntk(X, 256, g) for _ in range(8)])  # (draws, n, n)
    se = E.std(0) / math.sqrt(len(E))
    K = cntk(X, depth=2, kind="ntk")
    assert ((E.mean(0) - K).abs() <= 4 * se).all(), ((E.mean(0) - K).abs() / se).max()
    assert not torch.allclose(K, cntk(X, depth=2, kind="nngp"), rtol=0.1)  # the Theta term matters
