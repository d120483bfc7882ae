"""RFM: closed-form AGOP vs autograd, KRR reduction, solvers, normalisations, contract, xRFM parity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featlab.kernels.mahalanobis import gaussian_kernel, kernel_matrix, laplace_kernel, sq_mahalanobis
from featlab.kernels.rfm import RFM
from featlab.kernels.rfm_agop import kernel_agop, kernel_grads, matrix_power_psd, normalise_M
from featlab.kernels.solvers import Solver, ridge_solve, ridge_solve_grid


def _data(n=60, d=5, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    alpha = torch.randn(n, c, generator=g, dtype=torch.float64)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    return X, alpha, A @ A.T / d + 0.1 * torch.eye(d, dtype=torch.float64), g


def _oracle_grad(q, X, alpha, M, kind, L):
    """Autograd through f(q) = sum_i alpha_i k(x_i, q) with coinciding points masked out."""
    q = q.clone().requires_grad_(True)
    keep = (X - q.detach()).abs().sum(1) > 0
    diff = q[None] - X[keep]
    Md = diff * M if M.ndim == 1 else diff @ M
    r2 = (Md * diff).sum(1)
    k = torch.exp(-r2.sqrt() / L) if kind == "laplace" else torch.exp(-r2 / (2 * L**2))
    f = k @ alpha[keep]  # (c,)
    return torch.stack([torch.autograd.grad(f[c], q, retain_graph=True)[0] for c in range(len(f))])


@pytest.mark.parametrize("kind", ["laplace", "gaussian"])
@pytest.mark.parametrize("diag", [False, True])
def test_closed_form_gradient_equals_autograd(kind, diag):
    X, alpha, M, g = _data()
    if diag:
        M = torch.rand(X.shape[1], generator=g, dtype=torch.float64) + 0.2
    L = 2.0
    Q = torch.cat([torch.randn(4, X.shape[1], generator=g, dtype=torch.float64), X[3:5]])  # 2 coincide
    G = kernel_grads(Q, X, alpha, M, kind=kind, bandwidth=L)  # (m, c, d)
    for m in range(len(Q)):
        torch.testing.assert_close(G[m], _oracle_grad(Q[m], X, alpha, M, kind, L), rtol=1e-10, atol=1e-12)
    # the AGOP is the sum of outer products of those gradients (batch size irrelevant)
    A1 = kernel_agop(Q, X, alpha, M, kind=kind, bandwidth=L, diag=diag, batch_size=1)
    flat = G.reshape(-1, X.shape[1])
    ref = (flat**2).sum(0) if diag else flat.T @ flat
    torch.testing.assert_close(A1, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(kernel_agop(Q, X, alpha, M, kind=kind, bandwidth=L, diag=diag), ref,
                               rtol=1e-12, atol=1e-14)


def test_centering_pooled_over_classes_matches_explicit():
    X, alpha, M, g = _data(c=3)
    Q = X[:10] + 0.1
    G = kernel_grads(Q, X, alpha, M, bandwidth=3.0).reshape(-1, X.shape[1])
    Gc = G - G.mean(0)
    torch.testing.assert_close(kernel_agop(Q, X, alpha, M, bandwidth=3.0, centering=True, batch_size=3),
                               Gc.T @ Gc, rtol=1e-10, atol=1e-12)


def test_convention_kernels_and_distance():
    X, _, M, _ = _data(n=7)
    Z = X.flip(0) * 0.7
    D2 = sq_mahalanobis(X, Z, M)
    ref = torch.einsum("ijd,de,ije->ij", X[:, None] - Z[None], M, X[:, None] - Z[None])
    torch.testing.assert_close(D2, ref)
    torch.testing.assert_close(laplace_kernel(X, Z, M, bandwidth=2.0), torch.exp(-ref.sqrt() / 2))
    torch.testing.assert_close(gaussian_kernel(X, Z, M, bandwidth=2.0, batch_size=2), torch.exp(-ref / 8))
    assert (sq_mahalanobis(X, X, M).diagonal() >= 0).all()


def test_n_iter_zero_equals_krr_with_precomputed_laplace():
    from sklearn.kernel_ridge import KernelRidge

    X, _, _, g = _data(n=80)
    y = torch.sin(X[:, 0]) + X[:, 1]
    Xt = X[:5] * 1.3
    m = RFM(4.0, reg=1e-2, n_iter=0, validation_fraction=0.0, random_state=0).fit(X.numpy(), y.numpy())
    K = laplace_kernel(X, X, bandwidth=4.0).numpy()
    kr = KernelRidge(alpha=1e-2, kernel="precomputed").fit(K, y.numpy())
    np.testing.assert_allclose(m.predict(Xt.numpy()), kr.predict(laplace_kernel(Xt, X, bandwidth=4.0).numpy()),
                               rtol=1e-9, atol=1e-10)


def test_multi_ridge_eigh_equals_separate_solves():
    X, _, _, g = _data(n=70)
    K = laplace_kernel(X, X, bandwidth=3.0)
    Y = torch.randn(70, 3, generator=g, dtype=torch.float64)
    regs = [10.0, 1.0, 0.1, 1e-2, 1e-3]
    for r, a in zip(regs, ridge_solve_grid(K, Y, regs, "eigh")):
        ref = torch.linalg.solve(K + r * torch.eye(70, dtype=torch.float64), Y)
        assert (torch.linalg.norm(a - ref) / torch.linalg.norm(ref)) <= 1e-10


@pytest.mark.parametrize("solver", list(Solver))
def test_all_solvers_agree(solver):
    X, _, _, g = _data(n=50)
    K = laplace_kernel(X, X, bandwidth=3.0)
    Y = torch.randn(50, 2, generator=g, dtype=torch.float64)
    ref = torch.linalg.solve(K + 1e-2 * torch.eye(50, dtype=torch.float64), Y)
    torch.testing.assert_close(ridge_solve(K, Y, 1e-2, solver), ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("m_norm", ["max", "trace", "frobenius", "mean", "none"])
def test_convention_m_norm(m_norm):
    G = torch.tensor([[4.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    M = normalise_M(G, m_norm, n_points=8)
    expect = {"max": lambda: M.max(), "trace": lambda: M.trace(), "frobenius": lambda: torch.linalg.norm(M),
              "mean": lambda: M[0, 0] * 8 / 4, "none": lambda: M[0, 0] / 4}[m_norm]()
    assert float(expect) == pytest.approx(1.0)


def _fit_one_update(**kw):
    X, _, _, _ = _data(n=60, d=4)
    y = (X[:, 0] * X[:, 1]).numpy()
    kw = dict(dict(n_iter=1, selection="last", validation_fraction=0.0, agop_sampling="first",
                   reg=1e-3, bandwidth=3.0), **kw)
    m = RFM(**kw).fit(X.numpy(), y)
    return X, y, m


def test_power_half_gives_M_squared_proportional_to_agop():
    X, y, m = _fit_one_update(power=0.5, m_norm="frobenius")
    K = laplace_kernel(X, X, bandwidth=3.0)
    a = ridge_solve(K, torch.as_tensor(y)[:, None], 1e-3)
    G = kernel_agop(X, X, a, torch.eye(4, dtype=torch.float64), bandwidth=3.0)
    M2 = m.M_ @ m.M_
    torch.testing.assert_close(M2 / torch.linalg.norm(M2), G / torch.linalg.norm(G), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(matrix_power_psd(G, 0.5) @ matrix_power_psd(G, 0.5), G, rtol=1e-8, atol=1e-10)


def test_diag_variant_changes_and_equals_diag_agop():
    X, y, m1 = _fit_one_update(diag=True)
    _, _, m2 = _fit_one_update(diag=True, n_iter=2)
    assert m1.M_.ndim == 1 and not torch.allclose(m1.M_, torch.ones(4, dtype=torch.float64))
    assert not torch.allclose(m1.M_, m2.M_)
    # M_2 is the max-normalised diagonal of the AGOP computed with the diagonal M_1
    K = laplace_kernel(X, X, m1.M_, bandwidth=3.0)
    a = ridge_solve(K, torch.as_tensor(y)[:, None], 1e-3)
    Gfull = kernel_agop(X, X, a, torch.diag(m1.M_), bandwidth=3.0)
    torch.testing.assert_close(m2.M_, Gfull.diagonal() / Gfull.diagonal().max(), rtol=1e-9, atol=1e-12)


def test_low_rank_target_recovers_direction_and_beats_krr():
    rng = np.random.default_rng(0)
    d, n = 20, 1000
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    X = rng.normal(size=(n + 500, d))
    y = np.tanh(2 * X @ u) + (X @ u) ** 2
    rfm = RFM(n_iter=3, random_state=0).fit(X[:n], y[:n])
    krr = RFM(n_iter=0, random_state=0).fit(X[:n], y[:n])
    w, U = np.linalg.eigh(rfm.M_.numpy())
    assert abs(U[:, -1] @ u) > 0.9
    e_rfm = np.mean((rfm.predict(X[n:]) - y[n:]) ** 2)
    e_krr = np.mean((krr.predict(X[n:]) - y[n:]) ** 2)
    assert e_rfm < 0.5 * e_krr


def test_estimator_contract_clone_params_and_fitted_attrs():
    from sklearn.base import clone

    m = RFM(5.0, reg=[1e-3, 1e-1], n_iter=1, random_state=3)
    assert not hasattr(m, "M_") and not hasattr(m, "alpha_")
    c = clone(m)
    assert c.get_params() == m.get_params() and c is not m
    m.set_params(n_iter=2)
    assert m.n_iter == 2 and m.get_params()["n_iter"] == 2
    with pytest.raises(ValueError, match="nope"):
        m.set_params(nope=1)
    X, _, _, _ = _data(n=50)
    y = X[:, 0].numpy()
    assert m.fit(X.numpy(), y) is m
    for attr in ("M_", "alpha_", "X_fit_", "n_iter_", "best_iter_", "best_reg_", "history_", "n_features_in_"):
        assert hasattr(m, attr)
    assert not hasattr(clone(m), "M_")
    m2 = RFM(5.0, reg=[1e-3, 1e-1], n_iter=2, random_state=3).fit(X.numpy(), y)
    assert torch.equal(m.M_, m2.M_) and np.array_equal(m.predict(X.numpy()), m2.predict(X.numpy()))
    with pytest.raises(AttributeError, match="not fitted"):
        RFM().predict(X.numpy())


@pytest.mark.parametrize("kw", [{"m_norm": "l2"}, {"kernel": "rbf"}, {"n_iter": -1}, {"reg": -1.0},
                                {"solver": "qr"}, {"validation_fraction": 1.5}])
def test_bad_arguments_name_the_argument(kw):
    X, _, _, _ = _data(n=20)
    with pytest.raises(ValueError) as e:
        RFM(**kw).fit(X.numpy(), X[:, 0].numpy())
    assert list(kw)[0] in str(e.value) and "\n" not in str(e.value)


def test_batch_size_does_not_change_results():
    X, _, _, _ = _data(n=64)
    y = (X[:, 0] ** 2).numpy()
    a = RFM(n_iter=2, random_state=0).fit(X.numpy(), y)
    b = RFM(n_iter=2, random_state=0, batch_size=7).fit(X.numpy(), y)
    torch.testing.assert_close(a.M_, b.M_, rtol=1e-9, atol=1e-12)  # summation order only


def test_convention_binary_uses_threshold_and_multiclass_argmax():
    X, _, _, _ = _data(n=120, d=3)
    yb = np.where(X[:, 0].numpy() > 0, "pos", "neg")
    m = RFM(n_iter=1, random_state=0).fit(X.numpy(), yb)
    assert m.alpha_.shape[1] == 1 and list(m.classes_) == ["neg", "pos"]
    F = m.decision_function(X.numpy())[:, 0]
    assert np.array_equal(m.predict(X.numpy()), np.where(F > 0.5, "pos", "neg"))
    P = m.predict_proba(X.numpy())
    np.testing.assert_allclose(P.sum(1), 1.0)
    y3 = np.digitize(X[:, 0].numpy(), [-0.5, 0.5])
    m3 = RFM(n_iter=1, random_state=0).fit(X, torch.as_tensor(y3))
    assert m3.alpha_.shape[1] == 3 and m3.score(X, y3) > 0.8
    assert isinstance(m3.predict(X), torch.Tensor)


def test_float32_close_to_float64():
    X, _, _, _ = _data(n=80)
    y = (X[:, 0] * X[:, 1]).numpy()
    a = RFM(n_iter=2, random_state=0).fit(X.numpy(), y)
    b = RFM(n_iter=2, random_state=0, dtype="float32").fit(X.numpy(), y)
    assert b.M_.dtype == torch.float32
    np.testing.assert_allclose(b.predict(X.numpy()), a.predict(X.numpy()), rtol=1e-2, atol=1e-2)


def test_xrfm_parity_matched_settings():
    xrfm = pytest.importorskip("xrfm")
    rng = np.random.default_rng(1)
    n, nv, d, T, L, lam = 300, 60, 8, 2, 10.0, 1e-3
    X = rng.normal(size=(n + nv, d))
    y = (X[:, 0] * X[:, 1] + np.sin(X[:, 2]))[:, None]
    Xtr, ytr, Xv, yv = X[:n], y[:n], X[n:], y[n:]
    ours = RFM(L, reg=lam, n_iter=T, m_norm="max", m_jitter=1e-8, agop_sampling="first", agop_samples=20000,
               solver="cholesky").fit(Xtr, ytr, eval_set=(Xv, yv))
    theirs = xrfm.RFM(kernel="laplace", bandwidth=L, iters=T, diag=False, device="cpu", verbose=False,
                      tuning_metric="mse", solver="cholesky")
    theirs.fit((torch.as_tensor(Xtr), torch.as_tensor(ytr)), (torch.as_tensor(Xv), torch.as_tensor(yv)),
               iters=T, reg=lam, early_stop_rfm=False, center_grads=False, method="lstsq")
    # iters=T is passed to fit as well: xRFM records best_iter=None for the final model otherwise
    assert ours.best_iter_ == theirs.best_iter
    Xq = torch.as_tensor(rng.normal(size=(50, d)))
    p_ours = ours.decision_function(Xq)
    p_theirs = theirs.predict(Xq)
    rel = torch.linalg.norm(p_ours - p_theirs) / torch.linalg.norm(p_theirs)
    assert rel < 1e-6  # m_jitter=1e-8 is xRFM's +1e-8 I inside sqrt(M); without it ~1e-5


def test_bandwidth_median_mode_scales_by_median_distance():
    X, _, _, _ = _data(n=50, d=3)
    y = X[:, 0].numpy()
    m = RFM(2.0, bandwidth_mode="median", n_iter=0, validation_fraction=0.0, random_state=0).fit(X.numpy(), y)
    D = torch.cdist(X, X)
    med = D[~torch.eye(50, dtype=torch.bool)].median()
    assert m.bandwidth_ == pytest.approx(2.0 * float(med), rel=1e-6)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    X, _, _, _ = _data(n=64)
    y = (X[:, 0] ** 2).numpy()
    a = RFM(n_iter=2, random_state=0).fit(X, y)
    b = RFM(n_iter=2, random_state=0, device="cuda").fit(X.cuda(), y)
    assert b.M_.is_cuda
    torch.testing.assert_close(b.M_.cpu(), a.M_, rtol=1e-8, atol=1e-10)


def test_solver_restores_K_and_rescues_indefinite_cholesky():
    X, _, _, g = _data(n=30)
    K = laplace_kernel(X, X, bandwidth=3.0)
    K0 = K.clone()
    Y = torch.randn(30, 2, generator=g, dtype=torch.float64)
    ridge_solve(K, Y, 1e-2, "cholesky")
    torch.testing.assert_close(K, K0, rtol=0, atol=1e-15)
    Kneg = K0 - 2 * torch.eye(30, dtype=torch.float64)  # indefinite: Cholesky fails
    a = ridge_solve(Kneg, Y, 1e-3, "cholesky")
    bump = 1e-2 * float((Kneg + 1e-3 * torch.eye(30, dtype=torch.float64)).abs().sum(1).max())
    ref = torch.linalg.solve(Kneg + (1e-3 + bump) * torch.eye(30, dtype=torch.float64), Y)
    torch.testing.assert_close(a, ref, rtol=1e-9, atol=1e-12)


# --- the one-pass fast path (issue 15) against the plain path ------------------------------------
@pytest.mark.parametrize("kind", ["laplace", "gaussian"])
def test_gram_with_grad_weights_upper_triangles_equal_kernel_and_grad_weights(kind):
    from featlab.kernels.mahalanobis import grad_weights, gram_with_grad_weights, packed_grad_weights

    X, _, M, _ = _data(n=37, d=4)
    X = torch.cat([X, X[:2]])  # two exact duplicates: self pairs off the diagonal
    K, W = gram_with_grad_weights(X, M, kind=kind, bandwidth=2.0, batch_size=5)
    Kref = kernel_matrix(X, X, M, kind=kind, bandwidth=2.0)
    Kt = grad_weights(X, X, M, kind=kind, bandwidth=2.0)
    up = torch.ones_like(K, dtype=torch.bool).triu()
    # at the duplicated pairs r^2 is rounding (~1e-16), which the sqrt amplifies: compare loosely
    dup = torch.zeros_like(up)
    dup[0, 37] = dup[1, 38] = True
    torch.testing.assert_close(K[up & ~dup], Kref[up & ~dup], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(K[dup], Kref[dup], rtol=0, atol=1e-7)
    assert (K.diagonal() == 1).all()
    Kt.fill_diagonal_(0.0)  # a point's own pair is excluded from its gradient in both conventions
    strict = torch.ones_like(up).triu(1)
    torch.testing.assert_close(W[strict], Kt[strict], rtol=1e-12, atol=1e-15)
    if kind == "laplace":
        assert W[0, 37] == 0 and W[1, 38] == 0  # the duplicated pairs are masked like self pairs
    rows = torch.tensor([3, 0, 38, 20])
    torch.testing.assert_close(packed_grad_weights(W, rows), Kt[rows], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(packed_grad_weights(W, slice(4, 9)), Kt[4:9], rtol=1e-12, atol=1e-15)
    K2, W2 = gram_with_grad_weights(X, M, kind=kind, bandwidth=2.0, out=(torch.full_like(K, 7.0), torch.empty_like(W)))
    torch.testing.assert_close(K2[up & ~dup], K[up & ~dup], rtol=1e-12, atol=1e-15)  # batch size, reuse


@pytest.mark.parametrize("diag", [False, True])
def test_packed_agop_equals_plain_agop_for_slices_and_index_rows(diag):
    from featlab.kernels.mahalanobis import gram_with_grad_weights
    from featlab.kernels.rfm_agop import kernel_agop_packed

    X, alpha, M, g = _data(n=53, d=5, c=3)
    if diag:
        M = torch.rand(5, generator=g, dtype=torch.float64) + 0.2
    _, W = gram_with_grad_weights(X, M, bandwidth=3.0)
    for rows in (slice(0, 53), slice(10, 31), torch.tensor([2, 3, 17, 40, 50])):
        ref = kernel_agop(X[rows], X, alpha, M, bandwidth=3.0, diag=diag, centering=True)
        got = kernel_agop_packed(W, rows, X, alpha, M, diag=diag, centering=True, batch_size=4)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("solver", list(Solver))
def test_solvers_read_only_the_upper_triangle_when_told(solver):
    X, _, _, g = _data(n=40)
    K = laplace_kernel(X, X, bandwidth=3.0)
    Y = torch.randn(40, 2, generator=g, dtype=torch.float64)
    P = K.triu() + torch.randn(40, 40, generator=g, dtype=torch.float64).tril(-1)  # junk below
    P0 = P.clone()
    ref = torch.linalg.solve(K + 1e-2 * torch.eye(40, dtype=torch.float64), Y)
    torch.testing.assert_close(ridge_solve(P, Y, 1e-2, solver, triangle="upper"), ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(P, P0, rtol=0, atol=1e-15)  # left as it was
    a = ridge_solve_grid(P, Y, [1e-1, 1e-2], solver, triangle="upper")[1]
    torch.testing.assert_close(a, ref, rtol=1e-9, atol=1e-10)
    if solver == Solver.CHOLESKY:  # in place: the factor replaces K, same solution
        torch.testing.assert_close(ridge_solve(P, Y, 1e-2, solver, triangle="upper", overwrite=True), ref,
                                   rtol=1e-9, atol=1e-10)
        assert not torch.allclose(P.triu(), P0.triu())


def test_in_place_cholesky_failure_raises_and_fit_rescues():
    from featlab.kernels.solvers import NotPositiveDefinite

    X, _, _, g = _data(n=30)
    Kneg = laplace_kernel(X, X, bandwidth=3.0) - 2 * torch.eye(30, dtype=torch.float64)
    Y = torch.randn(30, 2, generator=g, dtype=torch.float64)
    with pytest.raises(NotPositiveDefinite):
        ridge_solve(Kneg.clone(), Y, 1e-3, "cholesky", triangle="upper", overwrite=True)
    # an RFM whose Gram matrix is singular (duplicated rows, reg 0) still fits: rebuilt, then rescued
    Xd = torch.cat([X, X]).numpy()
    y = np.concatenate([X[:, 0].numpy()] * 2)
    m = RFM(3.0, reg=0.0, n_iter=1, validation_fraction=0.0, random_state=0).fit(Xd, y)
    assert torch.isfinite(m.alpha_).all()


@pytest.mark.parametrize("sampling,agop_samples", [("first", 20000), ("random", 30)])
def test_fit_fast_path_equals_plain_path(sampling, agop_samples):
    """Cholesky/eigh (packed Gram, no second distance GEMM) vs LU (plain Gram + grad_weights)."""
    X, _, _, _ = _data(n=70, d=4)
    y = (X[:, 0] * X[:, 1] + X[:, 2]).numpy()
    kw = dict(n_iter=2, reg=1e-3, random_state=4, bandwidth=3.0, agop_sampling=sampling,
              agop_samples=agop_samples, selection="last")
    plain = RFM(solver="solve", **kw).fit(X, y)
    for solver in ("cholesky", "eigh"):
        fast = RFM(solver=solver, **kw).fit(X, y)
        for Mf, Mp in zip(fast.M_path_, plain.M_path_):
            torch.testing.assert_close(Mf, Mp, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(fast.decision_function(X * 0.9), plain.decision_function(X * 0.9),
                                   rtol=1e-7, atol=1e-9)


def test_m_jitter_adds_to_the_normalised_diagonal():
    X, y, m0 = _fit_one_update()
    _, _, m1 = _fit_one_update(m_jitter=1e-3)
    torch.testing.assert_close(m1.M_, m0.M_ + 1e-3 * torch.eye(4, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m1.M_path_[0], torch.eye(4, dtype=torch.float64))  # M_0 = I untouched
