"""ConvRFM: patch convention, reductions to RFM, closed-form patch gradient, PSD kernel, behaviour."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.data.toys import row_signal
from featlab.kernels.convrfm import ConvRFM, extract_patches, patch_agop_kernel, patch_grads, patch_kernel
from featlab.kernels.rfm import RFM


def _imgs(n=30, c=2, H=5, W=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, H, W, generator=g, dtype=torch.float64), g


def test_convention_patch_order_channel_row_col_and_padding():
    X = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    X[0, 1, 0, 0] = 1.0  # channel 1, pixel (0, 0)
    U = extract_patches(X, 3, "zero")  # (1, 16, 18)
    # position (1, 1) (index 5) sees pixel (0,0) at in-patch offset (0, 0): index c*9 + 0*3 + 0
    assert U[0, 5].nonzero().flatten().tolist() == [9]
    # position (0, 0) sees it at offset (1, 1) -> 9 + 4
    assert U[0, 0].nonzero().flatten().tolist() == [13]
    Uc = extract_patches(X, 3, "circular")
    # circular: position (3, 3) (index 15) sees pixel (0, 0) at offset (2, 2) through the wrap
    assert Uc[0, 15].nonzero().flatten().tolist() == [9 + 8]
    assert extract_patches(X, 3, "none").shape == (1, 4, 18)


def test_reduction_whole_image_patch_equals_rfm_on_flattened():
    X, _ = _imgs(n=40, c=2, H=3, W=3)
    y = (X[:, 0, 1, 1] * X[:, 1, 0, 2]).numpy()
    kw = dict(n_iter=2, reg=1e-3, random_state=5, bandwidth=4.0)
    conv = ConvRFM(patch_size=3, padding="none", **kw).fit(X, y)
    flat = RFM(**kw).fit(X.reshape(40, -1), y)
    torch.testing.assert_close(conv.M_, flat.M_, rtol=1e-9, atol=1e-12)
    Xq, _ = _imgs(n=6, c=2, H=3, W=3, seed=1)
    torch.testing.assert_close(conv.decision_function(Xq), flat.decision_function(Xq.reshape(6, -1)),
                               rtol=1e-9, atol=1e-12)


def test_reduction_1x1_patch_on_1x1_images_equals_rfm():
    X, _ = _imgs(n=40, c=4, H=1, W=1)
    y = (X[:, 0, 0, 0] ** 2).numpy()
    kw = dict(n_iter=2, reg=1e-3, random_state=2, bandwidth=3.0, diag=True)
    conv = ConvRFM(patch_size=1, padding="zero", **kw).fit(X, y)
    flat = RFM(**kw).fit(X.reshape(40, 4), y)
    torch.testing.assert_close(conv.M_, flat.M_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["laplace", "gaussian"])
def test_patch_gradient_equals_autograd(kind):
    X, g = _imgs(n=12, c=1, H=4, W=4)
    A = extract_patches(X, 3, "zero")  # (12, 16, 9)
    alpha = torch.randn(12, 2, generator=g, dtype=torch.float64)
    B = torch.randn(9, 9, generator=g, dtype=torch.float64)
    M = B @ B.T / 9
    Q = torch.cat([A[:2], A[5:6] + 0.3])  # the first two coincide with training images
    P, L = A.shape[1], 2.0
    G = patch_grads(Q, A, alpha, M, kind=kind, bandwidth=L)  # (P, m, c, D)
    for m in range(len(Q)):
        u = Q[m].clone().requires_grad_(True)  # (P, D), patches as independent inputs
        diff = u[None] - A  # (n, P, D)
        r2 = torch.einsum("npd,de,npe->np", diff, M, diff)
        keep = (diff.detach().abs().sum(-1) > 0)
        r2s = torch.where(keep, r2, torch.ones_like(r2))
        k = torch.exp(-r2s.sqrt() / L) if kind == "laplace" else torch.exp(-r2s / (2 * L**2))
        k = torch.where(keep, k, torch.zeros_like(k))
        f = (k.mean(1)[:, None] * alpha).sum(0)  # (c,)
        for c in range(2):
            ref = torch.autograd.grad(f[c], u, retain_graph=True)[0]  # (P, D)
            torch.testing.assert_close(G[:, m, c], ref, rtol=1e-10, atol=1e-13)


def test_kernel_symmetric_psd_and_chunking_invariant():
    X, g = _imgs(n=25, c=2, H=5, W=5)
    A = extract_patches(X, 3, "circular")
    B = torch.randn(18, 18, generator=g, dtype=torch.float64)
    M = B @ B.T / 18
    K = patch_kernel(A, A, M, bandwidth=3.0)
    torch.testing.assert_close(K, K.T)
    w = torch.linalg.eigvalsh(K)
    assert w.min() >= -1e-10 * w.max()
    torch.testing.assert_close(patch_kernel(A, A, M, bandwidth=3.0, chunk_size=4), K, rtol=1e-12, atol=1e-14)
    alpha = torch.randn(25, 3, generator=g, dtype=torch.float64)
    G1 = patch_agop_kernel(A[:7], A, alpha, M, bandwidth=3.0)
    G2 = patch_agop_kernel(A[:7], A, alpha, M, bandwidth=3.0, chunk_size=3)
    torch.testing.assert_close(G1, G2, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(G1, G1.T)


def test_convrfm_contract_and_bad_padding():
    from sklearn.base import clone

    m = ConvRFM(patch_size=5, padding="circular", n_iter=1)
    c = clone(m)
    assert c.get_params() == m.get_params() and c.patch_size == 5
    X, _ = _imgs(n=10)
    with pytest.raises(ValueError, match="padding"):
        ConvRFM(padding="reflect").fit(X, np.arange(10) % 2)


def test_row_signal_convrfm_beats_fixed_kernel():
    g = torch.Generator().manual_seed(0)
    X, y = row_signal(200, height=8, width=16, sigma=2.0, generator=g)
    Xt, yt = row_signal(400, height=8, width=16, sigma=2.0, generator=g)
    kw = dict(reg=1e-3, random_state=0, dtype="float32", selection="last", validation_fraction=0.0)
    fixed = ConvRFM(n_iter=0, **kw).fit(X, y).score(Xt, yt)
    learned = ConvRFM(n_iter=2, **kw).fit(X, y).score(Xt, yt)
    assert learned > fixed + 0.02, (fixed, learned)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    X, _ = _imgs(n=30)
    y = (X[:, 0, 2].sum(1) > 0).long()
    a = ConvRFM(n_iter=1, random_state=0).fit(X, y)
    b = ConvRFM(n_iter=1, random_state=0).fit(X.cuda(), y.cuda())
    torch.testing.assert_close(b.M_.cpu(), a.M_, rtol=1e-8, atol=1e-10)
