"""SS-HOPM Z-eigenvectors (spec emergence.md §6.1): planted rank-1, one-hot for white
sub-Gaussian data, TI contraction = dense contraction, NLGP localised."""
from __future__ import annotations

import math

import pytest
import torch

from featlab.theory.cumulants import cumulant4, nlgp_cumulant4, ti_to_dense
from featlab.theory.tensor_power import tensor_apply, z_eigenvectors


def _ipr(w):
    return (w ** 4).sum(-1) / (w ** 2).sum(-1) ** 2


def _sym(T):
    import itertools
    return sum(T.permute(*p) for p in itertools.permutations(range(4))) / 24


@pytest.mark.parametrize("shift", [None, 1.0])
def test_planted_rank1_is_recovered(shift):
    D = 10
    g = torch.Generator().manual_seed(0)
    v = torch.randn(D, generator=g, dtype=torch.float64)
    v /= v.norm()
    noise = _sym(torch.randn(D, D, D, D, generator=g, dtype=torch.float64)) * 0.02
    T = 2.0 * torch.einsum("i,j,k,l->ijkl", v, v, v, v) + noise
    r = z_eigenvectors(T, 1, sign=+1, n_starts=16, shift=shift, generator=torch.Generator().manual_seed(1))
    assert abs(float(r.vectors[0] @ v)) > 0.99
    assert abs(float(r.values[0]) - 2.0) < 0.1 and float(r.residual[0]) < 1e-6


def test_white_subgaussian_extremal_eigenvectors_are_one_hot():
    D, n = 8, 50_000
    U = (torch.rand(n, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1) * math.sqrt(3)
    T = cumulant4(U, Sigma=torch.eye(D, dtype=torch.float64))
    r = z_eigenvectors(T, D, sign=-1, n_starts=48, generator=torch.Generator().manual_seed(3))
    assert len(r.vectors) == D  # all D one-hots found, distinct
    assert (_ipr(r.vectors) > 0.95).all()
    assert torch.allclose(r.values, torch.full((D,), 1.8 - 3, dtype=torch.float64), atol=0.08)
    assert set(r.vectors.abs().argmax(-1).tolist()) == set(range(D))


def test_convention_sign_plus_maximises_and_delocalises_on_subgaussian_data():
    D = 8
    T = torch.zeros(D, D, D, D, dtype=torch.float64)
    for i in range(D):
        T[i, i, i, i] = -1.2  # (kappa - 3) diag, kappa = 1.8
    lo = z_eigenvectors(T, 1, sign=-1, generator=torch.Generator().manual_seed(4))
    hi = z_eigenvectors(T, 1, sign=+1, generator=torch.Generator().manual_seed(4))
    assert float(_ipr(lo.vectors[0])) > 0.99 and abs(float(lo.values[0]) + 1.2) < 1e-8
    assert float(_ipr(hi.vectors[0])) < 1.5 / D and float(hi.values[0]) > -1.2 / D * 1.01


def test_ti_contraction_equals_dense_contraction():
    D = 7
    g = torch.Generator().manual_seed(5)
    K = torch.randn(D, D, D, generator=g, dtype=torch.float64)
    W = torch.randn(3, D, generator=g, dtype=torch.float64)
    a3, a2 = tensor_apply(K, W)
    b3, b2 = tensor_apply(ti_to_dense(K), W)
    assert torch.allclose(a3, b3, atol=1e-12) and torch.allclose(a2, b2, atol=1e-12)
    c3, c2 = tensor_apply(K, W, chunk_size=1)  # memory knob only
    assert torch.allclose(a3, c3, atol=1e-12) and torch.allclose(a2, c2, atol=1e-12)


def _kernel(D, xi):
    i = torch.arange(D)
    d = (i[:, None] - i[None]).abs()
    d = torch.minimum(d, D - d).double()
    return torch.exp(-d ** 2 / xi ** 2)


def test_nlgp_eigenvectors_are_localised_and_dedupe_by_translation():
    D = 20
    K = nlgp_cumulant4(_kernel(D, 2.0), 3.0, n_nodes=8)
    kw = dict(sign=-1, n_starts=8, tol=1e-6, max_iter=300, dedupe_tol=1e-2, generator=torch.Generator().manual_seed(6))
    r = z_eigenvectors(K, 4, dedupe_translation=True, **kw)
    w = r.vectors[0]
    assert float(_ipr(w)) > 1.5 * 3 / (D + 2) and float(r.residual[0]) < 1e-3
    prof = torch.roll(w ** 2, D // 2 - int(w.abs().argmax()))  # peak at D/2
    assert (prof[: D // 2].diff() >= -1e-9).all() and (prof[D // 2:].diff() <= 1e-9).all()  # a single bump
    # site-centred and bond-centred bumps: at most 2 classes up to translation, 8 starts in all
    assert len(r.vectors) <= 2 and int(r.counts.sum()) == 8
    r2 = z_eigenvectors(K, 8, **kw)
    assert len(r2.vectors) > len(r.vectors)  # without translation dedupe the translates stay distinct


def test_exception():
    T = torch.zeros(3, 3, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="sign"):
        z_eigenvectors(T, sign=0)
    with pytest.raises(ValueError, match="T must be"):
        z_eigenvectors(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="shift"):
        z_eigenvectors(T, shift=-1.0)
