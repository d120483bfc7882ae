"""Deep ConvRFM: filter sampling, the two protocols (records, test-set guard), batching, contract."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featlab.kernels.deep_convrfm import DeepConvRFM, TestSetGuard, sample_filters


def _task(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64)
    y = (X[:, 0, 2, :].sum(1) > 0).long()
    return X, y


def _M(D=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(D, D, generator=g, dtype=torch.float64)
    return B @ B.T / D


def test_filter_sampling_second_moment_converges_like_inverse_sqrt_width():
    M = _M()
    errs = []
    for w in (64, 1024):
        e = []
        for s in range(6):
            W = sample_filters(M, w, 1, generator=torch.Generator().manual_seed(s)).reshape(w, -1)
            e.append(float(torch.linalg.norm(W.T @ W / w - M) / torch.linalg.norm(M)))
        errs.append(np.mean(e))
    ratio = errs[0] / errs[1]  # expected sqrt(1024 / 64) = 4
    assert 2.5 < ratio < 6.5, errs


def test_filter_sampling_sampleM_rows_have_covariance_M_over_trace():
    M = _M()
    W = sample_filters(M, 20000, 1, method="sampleM", generator=torch.Generator().manual_seed(0)).reshape(20000, -1)
    C = W.T @ W / 20000
    assert float(torch.linalg.norm(C - M / M.trace()) / torch.linalg.norm(M / M.trace())) < 0.05
    assert sample_filters(M, 4, 1).shape == (4, 1, 3, 3)


class _Spy(DeepConvRFM):
    """Records the AGOP images and the alpha used for each AGOP, and every solve's alphas."""

    def _solve(self, K, Y):
        out = super()._solve(K, Y)
        self.__dict__.setdefault("solves", []).append(out)
        return out

    def _agop(self, Uq, U, grid, M, kdepth, alpha, kmax):
        self.__dict__.setdefault("agop_calls", []).append((len(Uq), alpha))
        return super()._agop(Uq, U, grid, M, kdepth, alpha, kmax)


def test_reference_protocol_selects_on_test_first20_last_reg():
    X, y = _task(n=40)
    Xt, yt = _task(n=30, seed=1)
    guard = TestSetGuard(Xt, yt)
    m = _Spy(depth=2, width=4, n_iter=2, protocol="reference", random_state=0).fit(X, y, test_set=guard)
    assert guard.accesses > 0
    rec = m.protocol_record_
    assert rec["selection_set"] == "test" and rec["agop_images"] == 20 and rec["alpha_for_agop"] == "last reg"
    assert all(n == 20 for n, _ in m.agop_calls)
    # the AGOP of iteration 0 of level 0 used the last reg's alpha
    assert torch.equal(m.agop_calls[0][1], m.solves[0][-1])
    best = max(m.history_, key=lambda h: h["test_acc"])
    assert (m.best_level_, m.best_iter_) == (best["level"], best["iter"])
    assert m.solves[0][0].dtype == torch.float64  # returned in the working dtype, solved in float32


def test_clean_protocol_never_reads_the_test_set():
    X, y = _task(n=40)
    guard = TestSetGuard(*_task(n=30, seed=1))
    m = _Spy(depth=2, width=4, n_iter=2, agop_images=7, random_state=0).fit(X, y, test_set=guard)
    assert guard.accesses == 0
    assert m.protocol_record_["selection_set"] == "validation"
    assert all(n == 7 for n, _ in m.agop_calls)
    assert "validation_acc" in m.history_[0]
    acc = m.score(guard.X, guard.y)  # the single, final touch
    assert guard.accesses == 2 and 0 <= acc <= 1


def test_reference_without_test_set_is_refused_and_bad_args():
    X, y = _task(n=20)
    with pytest.raises(ValueError, match="test_set"):
        DeepConvRFM(protocol="reference", depth=1, n_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="mahalanobis"):
        DeepConvRFM(mahalanobis="sqrt").fit(X, y)


def test_batch_size_does_not_change_fit_and_contract():
    from sklearn.base import clone

    X, y = _task(n=30)
    kw = dict(depth=2, width=4, n_iter=2, random_state=3, agop_images=10)
    a = DeepConvRFM(**kw).fit(X, y)
    b = DeepConvRFM(batch_size=16, **kw).fit(X, y)
    torch.testing.assert_close(a.Ms_[0], b.Ms_[0], rtol=1e-8, atol=1e-10)
    c = clone(a)
    assert c.get_params() == a.get_params() and not hasattr(c, "alpha_")
    assert a.Ms_[0].shape == (9, 9) and len(a.filters_) == 1 and a.filters_[0].shape == (4, 1, 3, 3)


def test_next_M_variants():
    m = DeepConvRFM()
    G = _M()
    M1 = m._next_M(G)
    torch.testing.assert_close(M1, G / torch.linalg.norm(G))
    m.set_params(mahalanobis="agop_squared")
    torch.testing.assert_close(m._next_M(G), G @ G / torch.linalg.norm(G @ G))
    m.set_params(mahalanobis="agop", thresh=True)
    assert int(torch.linalg.matrix_rank(m._next_M(G))) == 9 - (3 * 9) // 4
    assert math.isclose(float(torch.linalg.norm(m._next_M(G))), 1.0)
